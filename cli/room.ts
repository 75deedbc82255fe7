/**
 * `unibus room create|ls|show|add|remove|leave|delete`: rooms from the shell,
 * through the client library, so every change is signed by the caller's
 * identity and verified like any program's.
 *
 * @module
 */

import type { UnibusClient } from "../lib/client/client.ts";
import type { RoomPolicy } from "../lib/e2e/membership.ts";
import { type OptionTable, parseCommandArgs, renderHelp, UsageError } from "./args.ts";
import { handleCache, memberKey, TARGET_OPTIONS, withClient } from "./bus_target.ts";
import type { Command } from "./command.ts";
import { csv } from "./contexts.ts";

const OPTIONS: OptionTable = {
  ...TARGET_OPTIONS,
  policy: {
    type: "string",
    valueName: "LIST",
    description: "create: any of encrypt,sign,persist (or none)",
    defaultText: "encrypt,sign",
  },
  member: {
    type: "string",
    valueName: "M",
    description: "create: a member to add (key or handle); repeat it, or give M,M",
  },
  json: { type: "boolean", description: "print JSON" },
};

const HELP = renderHelp(
  "unibus room <create SUBJECT|ls|show ROOM|add ROOM M…|remove ROOM M…|leave ROOM|delete ROOM> [options]",
  "Rooms of the identity in use. A ROOM is its subject or id; a member M is a sign key (64 hex) " +
    "or a handle naming exactly one active user.",
  OPTIONS,
);

/**
 * A policy from its names: "encrypt,sign,persist", a subset, or "none".
 *
 * @example
 * ```ts
 * parsePolicy("sign,persist"); // { encrypt: false, sign: true, persist: true }
 * ```
 */
export function parsePolicy(text: string): RoomPolicy {
  const names = text === "none" ? [] : csv(text);
  const policy = { encrypt: false, sign: false, persist: false };
  for (const n of names) {
    if (n !== "encrypt" && n !== "sign" && n !== "persist") {
      throw new UsageError(`--policy: "${n}" is not encrypt, sign or persist`);
    }
    policy[n] = true;
  }
  if (policy.encrypt && !policy.sign) {
    throw new UsageError("--policy: an encrypted room is always signed (encrypt,sign)");
  }
  return policy;
}

function policyNames(p: RoomPolicy): string {
  return (["encrypt", "sign", "persist"] as const).filter((k) => p[k]).join(",") || "none";
}

/** `--member` may repeat: every value, in order, taken out of `argv`. */
function takeMembers(argv: string[]): { members: string[]; rest: string[] } {
  const members: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--member") {
      if (i + 1 >= argv.length) throw new UsageError("--member needs a value");
      members.push(...csv(argv[++i]));
    } else if (a.startsWith("--member=")) {
      members.push(...csv(a.slice("--member=".length)));
    } else rest.push(a);
  }
  return { members, rest };
}

async function show(client: UnibusClient, ref: string, json: boolean): Promise<void> {
  const session = await client.room(ref);
  const st = session.state;
  const handles = handleCache(client);
  const members = await Promise.all(
    [...st.members.values()].map(async (m) => ({
      signPub: m.signPub,
      handle: await handles(m.signPub),
      role: m.role,
    })),
  );
  if (json) {
    console.log(JSON.stringify({
      id: st.roomId,
      subject: st.subject,
      policy: st.policy,
      epoch: st.epoch,
      members,
    }));
    return;
  }
  console.log(`room ${st.subject} (${st.roomId})`);
  console.log(`  policy ${policyNames(st.policy)}, epoch ${st.epoch}`);
  for (const m of members) console.log(`  ${m.role.padEnd(6)} ${m.handle ?? "?"} ${m.signPub}`);
}

/** `unibus room`. */
export const roomCommand: Command = {
  name: "room",
  async run(argv) {
    const { members: memberFlags, rest } = takeMembers(argv);
    const { values: v, positionals } = parseCommandArgs(rest, OPTIONS, { maxPositionals: 64 });
    const [verb, room, ...names] = positionals;
    if (v.help || verb === undefined) {
      console.log(HELP);
      return v.help ? 0 : 2;
    }
    const json = v.json === true;
    const needRoom = () => {
      if (!room) throw new UsageError(`room ${verb} needs a ROOM (subject or id)`);
      return room;
    };
    switch (verb) {
      case "create": {
        const subject = needRoom();
        if (names.length > 0) throw new UsageError(`unexpected argument "${names[0]}"`);
        const policy = parsePolicy(typeof v.policy === "string" ? v.policy : "encrypt,sign");
        return await withClient(v, async (c) => {
          const keys = await Promise.all(memberFlags.map((m) => memberKey(c, m)));
          const info = await c.createRoom(subject, policy, { members: keys });
          if (json) console.log(JSON.stringify(info));
          else {console.log(
              `created room ${info.subject} (${info.id}), ${policyNames(info.policy)}`,
            );}
          return 0;
        });
      }
      case "ls":
      case "list":
        return await withClient(v, async (c) => {
          const rooms = await c.listRooms();
          if (json) console.log(JSON.stringify(rooms));
          else if (rooms.length === 0) console.log("no rooms");
          else {
            for (const r of rooms) {
              console.log(`${r.subject}  ${r.id}  ${policyNames(r.policy)}  epoch ${r.epoch}`);
            }
          }
          return 0;
        });
      case "show":
        return await withClient(v, async (c) => (await show(c, needRoom(), json), 0));
      case "add":
      case "remove": {
        const ref = needRoom();
        if (names.length === 0) throw new UsageError(`room ${verb} needs at least one member`);
        return await withClient(v, async (c) => {
          const keys = await Promise.all(names.map((m) => memberKey(c, m)));
          let info;
          if (verb === "add") info = await c.addMembers(ref, keys);
          else for (const k of keys) info = await c.removeMember(ref, k);
          if (json) console.log(JSON.stringify(info));
          else console.log(`${verb === "add" ? "added" : "removed"} ${keys.length} in ${ref}`);
          return 0;
        });
      }
      case "leave":
      case "delete": {
        const ref = needRoom();
        return await withClient(v, async (c) => {
          if (verb === "leave") await c.leave(ref);
          else await c.deleteRoom(ref);
          if (json) {
            console.log(
              JSON.stringify({ room: ref, [verb === "leave" ? "left" : "deleted"]: true }),
            );
          } else console.log(`${verb === "leave" ? "left" : "deleted"} ${ref}`);
          return 0;
        });
      }
      default:
        throw new UsageError(`unknown room command "${verb}" (try 'unibus room --help')`);
    }
  },
};
