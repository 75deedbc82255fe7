/**
 * What every client command (room, send, listen, request, respond, history,
 * blob, mcp) shares: the flags that say where the bus is and who is
 * speaking, the connection made from them, and how a member named on the
 * command line (a key or a handle) becomes a key.
 *
 * @module
 */

import { connect, type UnibusClient } from "../lib/client/client.ts";
import { loadIdentity } from "../lib/identity/identity.ts";
import { type OptionTable, UsageError } from "./args.ts";
import { resolveTarget } from "./contexts.ts";

/** The flags that name a context or override it. */
export const TARGET_OPTIONS: OptionTable = {
  context: {
    type: "string",
    valueName: "NAME",
    description: "context to use (else UNIBUS_CONTEXT, else the selected one)",
  },
  "identity-file": { type: "string", valueName: "PATH", description: "identity to speak as" },
  "nats-seeds": { type: "string", valueName: "URL,URL", description: "NATS URLs of the nodes" },
  "ctrl-seeds": {
    type: "string",
    valueName: "URL,URL",
    description: "control-plane URLs of the nodes",
  },
  ca: { type: "string", valueName: "PATH", description: "CA (PEM) pinning TLS on both planes" },
};

/**
 * Connects as the identity the flags (or the context) name.
 *
 * @example
 * ```ts
 * const client = await openClient({ context: "ada" });
 * ```
 */
export async function openClient(
  values: Record<string, string | boolean | undefined>,
): Promise<UnibusClient> {
  const str = (k: string) => typeof values[k] === "string" ? values[k] as string : undefined;
  const target = await resolveTarget({
    context: str("context"),
    identityFile: str("identity-file"),
    natsSeeds: str("nats-seeds"),
    ctrlSeeds: str("ctrl-seeds"),
    ca: str("ca"),
  });
  const identity = await loadIdentity(target.identityFile);
  return await connect({
    natsServers: target.natsSeeds,
    ctrlUrls: target.ctrlSeeds,
    identity,
    ...(target.ca ? { tls: { caFile: target.ca } } : {}),
  });
}

/**
 * Runs `act` on a client opened from `values` (see {@linkcode openClient})
 * and closes the client whatever `act` does.
 *
 * @example
 * ```ts
 * const rooms = await withClient(values, (c) => c.listRooms());
 * ```
 */
export async function withClient<T>(
  values: Record<string, string | boolean | undefined>,
  act: (c: UnibusClient) => Promise<T>,
): Promise<T> {
  const client = await openClient(values);
  try {
    return await act(client);
  } finally {
    await client.close();
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * A member named by sign key (64 hex) or by handle: the key, when the
 * handle names exactly one active user; otherwise an error naming it.
 *
 * @example
 * ```ts
 * await memberKey(client, "bob"); // "3f…"
 * ```
 */
export async function memberKey(client: UnibusClient, member: string): Promise<string> {
  if (HEX64.test(member)) return member;
  if (member === "") throw new UsageError("an empty member name");
  const users = await client.control.usersByHandle(member);
  if (users.length === 1) return users[0].signPub;
  if (users.length === 0) throw new Error(`no active user has the handle "${member}"`);
  throw new Error(
    `the handle "${member}" names ${users.length} users; give one key: ` +
      users.map((u) => u.signPub).join(", "),
  );
}

/**
 * A sender's handle, asked of the control plane once per key.
 *
 * @example
 * ```ts
 * const handles = handleCache(client);
 * await handles(meta.sender); // "ada"
 * ```
 */
export function handleCache(client: UnibusClient): (signPub: string) => Promise<string | null> {
  const known = new Map<string, Promise<string | null>>();
  return (signPub) => {
    let h = known.get(signPub);
    if (!h) {
      h = client.control.getUser(signPub).then((u) => u.handle, () => null);
      known.set(signPub, h);
    }
    return h;
  };
}

/**
 * The text of a payload when it is valid UTF-8, else null.
 *
 * @example
 * ```ts
 * textOf(new TextEncoder().encode("hi")); // "hi"
 * ```
 */
export function textOf(data: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    return null;
  }
}
