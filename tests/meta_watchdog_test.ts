/**
 * The meta group watchdog's decision: only a node outside a meta group
 * smaller than the configured cluster restarts its nats-server; a full group,
 * no leader yet, a member, or a node leading a group of its own does not.
 * (That the restart heals a short group was measured on real nats-servers:
 * docs/operations.md "Faults".)
 */

import {
  metaGroupVerdict,
  metaGroupWhole,
  type MetaView,
} from "../server/cluster/meta_watchdog.ts";
import { assertEquals } from "./helpers/assert.ts";

const view = (
  server: string,
  leader: string | null,
  size: number | null,
  replicas: string[] = [],
) => ({ server, leader, clusterSize: size, replicas }) satisfies MetaView;

Deno.test("a node outside a short meta group is left out; its members and a full group are not", () => {
  // As seen on a cold start: n2 leads a group of two with n3; n1 follows n2 but is not in it.
  const short = [view("n1", "n2", 2), view("n2", "n2", 2, ["n3"]), view("n3", "n2", 2)];
  assertEquals(metaGroupVerdict("n1", 3, short), {
    kind: "left-out",
    leader: "n2",
    size: 2,
    members: ["n2", "n3"],
  });
  assertEquals(metaGroupVerdict("n2", 3, short), { kind: "in" });
  assertEquals(metaGroupVerdict("n3", 3, short), { kind: "in" });
  // Healed, or a healthy cluster with a node down (the group keeps its size).
  const full = [view("n1", "n2", 3), view("n2", "n2", 3, ["n1", "n3"]), view("n3", "n2", 3)];
  for (const n of ["n1", "n2", "n3"]) assertEquals(metaGroupVerdict(n, 3, full), { kind: "in" });
  const oneDown = [view("n1", "n1", 3, ["n2"]), view("n2", "n1", 3)];
  assertEquals(metaGroupVerdict("n3", 3, oneDown), { kind: "in" });
  // No leader yet (a cold boot under way), or no answers: nothing to do.
  assertEquals(metaGroupVerdict("n1", 3, [view("n1", null, 3), view("n2", null, 3)]), {
    kind: "in",
  });
  assertEquals(metaGroupVerdict("n1", 3, []), { kind: "in" });
});

Deno.test("a node leading a meta group of its own is a split, not restarted", () => {
  const split = [view("n1", "n1", 1), view("n2", "n2", 2, ["n3"]), view("n3", "n2", 2)];
  assertEquals(metaGroupVerdict("n1", 3, split), { kind: "split", leaders: ["n1", "n2"] });
  assertEquals(metaGroupVerdict("n3", 3, split), { kind: "in" });
});

Deno.test("the watch ends once the node is in a group of the configured size", () => {
  const short = [view("n1", "n2", 2), view("n2", "n2", 2, ["n3"]), view("n3", "n2", 2)];
  for (const n of ["n1", "n2", "n3"]) assertEquals(metaGroupWhole(n, 3, short), false);
  const full = [view("n1", "n2", 3), view("n2", "n2", 3, ["n1", "n3"]), view("n3", "n2", 3)];
  for (const n of ["n1", "n2", "n3"]) assertEquals(metaGroupWhole(n, 3, full), true);
  // Sized for three, but this node not (yet) among its members: keep watching.
  assertEquals(metaGroupWhole("n3", 3, [view("n1", "n1", 3, ["n2"])]), false);
  assertEquals(metaGroupWhole("n1", 3, [view("n1", null, 3)]), false);
});
