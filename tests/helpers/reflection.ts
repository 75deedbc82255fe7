/**
 * The JetStream reflection attacks, played by a bus user with a raw nats.js
 * connection against a running serve (one node on either store, or a
 * cluster): JetStream publishes its answers (a stream's ack, a direct get's
 * stored message) to whatever reply subject the asker set, with its own
 * rights. The attacker owns one persisted room, stores chosen bytes in it,
 * and aims those answers at the control plane, the streams' API, other
 * rooms, other users' notices and acks. Afterwards nothing may have changed
 * but the attacker's own stream, and no client may have acted on anything.
 *
 * @module
 */

import { jetstreamManager } from "@nats-io/jetstream";
import { connect as natsConnect, headers, type NatsConnection } from "@nats-io/transport-node";
import { inboxPrefixFor, roomStreamName, wireSubject } from "../../lib/auth/acl.ts";
import { NativeNkeyPair, nkeyAuthenticatorFor, Prefix } from "../../lib/auth/nkey.ts";
import type { RoomSubscription, UnibusClient } from "../../lib/client/client.ts";
import { generateIdentity, type Identity, loadIdentity } from "../../lib/identity/identity.ts";
import { accountUser } from "../../server/nats/account_users.ts";
import { assert, assertEquals } from "./assert.ts";
import { busUserOf, connectAs, publishDenied } from "./bus.ts";

/** Where the attack runs. */
export interface ReflectionEnv {
  /** NATS URLs (loopback) the users connect to; the attacker uses the last one. */
  natsUrls: string[];
  /** A node's internal identity file: the taps that watch each account derive from it. */
  internalIdFile: string;
  /** Puts an identity on the allowlist (store, CLI or HTTP as the setting has it). */
  register(id: Identity): Promise<void>;
  /** A client library connection for `id` (to the first URL). */
  client(id: Identity): Promise<UnibusClient>;
}

const enc = new TextEncoder();
const portOf = (url: string) => Number(new URL(url).port);

// The streams of one account, as what an attack could have changed: names,
// subjects and contents (count and last sequence).
async function streamsOf(nc: NatsConnection): Promise<Record<string, string>> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const out: Record<string, string> = {};
  for await (const si of jsm.streams.list()) {
    out[si.config.name] = JSON.stringify({
      subjects: si.config.subjects,
      messages: si.state.messages,
      last: si.state.last_seq,
      first: si.state.first_seq,
    });
  }
  return out;
}

/**
 * Runs every reflection attack and checks that none had an effect.
 *
 * @example
 * ```ts
 * await runReflectionAttacks({ natsUrls: [url], internalIdFile, register, client });
 * ```
 */
export async function runReflectionAttacks(env: ReflectionEnv): Promise<void> {
  const alice = generateIdentity("alice");
  const bob = generateIdentity("bob");
  const mallory = generateIdentity("mallory");
  for (const id of [alice, bob, mallory]) await env.register(id);
  const internal = await loadIdentity(env.internalIdFile);
  const open: Array<{ close(): Promise<void> }> = [];
  const track = <T extends { close(): Promise<void> }>(c: T): T => (open.push(c), c);
  const taps = {
    ctrl: track(
      await natsConnect({
        servers: env.natsUrls[0],
        authenticator: nkeyAuthenticatorFor(new NativeNkeyPair(Prefix.User, internal.signSeed)),
      }),
    ),
    rooms: track(
      await natsConnect({
        servers: env.natsUrls[0],
        authenticator: nkeyAuthenticatorFor(accountUser(internal.signSeed, "rooms")),
      }),
    ),
    users: track(
      await natsConnect({
        servers: env.natsUrls[0],
        authenticator: nkeyAuthenticatorFor(accountUser(internal.signSeed, "users")),
      }),
    ),
  };
  try {
    // The victims: a persisted encrypted room and a plain one, both alice's
    // with bob; mallory was a member of the persisted one and was removed.
    const ca = track(await env.client(alice));
    const victim = await ca.createRoom("victim.vault", {
      encrypt: true,
      sign: true,
      persist: true,
    }, { members: [bob.signPubHex, mallory.signPubHex] });
    const plain = await ca.createRoom("victim.plain", {
      encrypt: false,
      sign: false,
      persist: false,
    }, { members: [bob.signPubHex] });
    await ca.removeMember(victim, mallory.signPubHex);
    const cb = track(await env.client(bob));
    let bobReconnects = 0;
    (async () => {
      for await (const s of cb.nats.status()) if (s.type === "reconnect") bobReconnects++;
    })();
    const heard: string[] = [];
    const subs: RoomSubscription[] = [
      await cb.subscribe(victim, (_m, p) => heard.push(new TextDecoder().decode(p))),
      await cb.subscribe(plain, (_m, p) => heard.push(new TextDecoder().decode(p))),
    ];
    await ca.publish(victim, "genuine 1");
    await ca.publish(plain, "genuine 2");
    await ca.flush();
    const deadline = Date.now() + 10_000;
    while (heard.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assertEquals(heard.sort(), ["genuine 1", "genuine 2"], "bob hears both rooms first");

    // The attacker's own persisted room, made with the library, then raw NATS.
    const cm = track(await env.client(mallory));
    const own = await cm.createRoom("mallory.own", { encrypt: true, sign: true, persist: true });
    await cm.close();
    const m = track(await connectAs(portOf(env.natsUrls.at(-1)!), busUserOf(mallory)));
    const ownWire = wireSubject(own);
    const ownStream = roomStreamName(own.id);
    const victimStream = roomStreamName(victim.id);

    // What each account holds before, and watchers that prove the
    // reflections did land where they were aimed (so "no effect" means the
    // receiver refused them, not that nothing arrived).
    const before = { ctrl: await streamsOf(taps.ctrl), rooms: await streamsOf(taps.rooms) };
    const landed: Record<string, number> = {};
    for (
      const s of [
        `${inboxPrefixFor(bob.signPubHex)}.unibus.>`,
        `${inboxPrefixFor(alice.signPubHex)}.unibus.>`,
        plain.subject,
        wireSubject(victim),
      ]
    ) {
      taps.users.subscribe(s, {
        callback: () => {
          landed[s] = (landed[s] ?? 0) + 1;
        },
      });
    }
    await taps.users.flush();

    // Stored bytes of the attacker's choosing, each with an ack: its sequence.
    const forged = generateIdentity("forged");
    const store = async (body: string, h?: Record<string, string>) => {
      const hdrs = headers();
      for (const [k, v] of Object.entries(h ?? {})) hdrs.set(k, v);
      const ack = await m.request(ownWire, enc.encode(body), { timeout: 5000, headers: hdrs });
      return ack.json<{ seq: number }>().seq;
    };
    const userRecord = await store(JSON.stringify({
      signPub: forged.signPubHex,
      handle: "forged",
      role: "admin",
      status: "active",
      kexPub: forged.kexPubHex,
      kexSig: forged.kexSigHex,
      addedAt: Date.now(),
    }));
    const purgeAll = await store("{}");
    const repoint = await store(JSON.stringify({ name: ownStream, subjects: ["_INBOX.>"] }));
    const create = await store(JSON.stringify({ name: "EVIL", subjects: ["evil.>"] }));
    const refresh = await store("refresh", { "Unibus-Notice": "1" });
    const roomNotice = await store(victim.id, { "Unibus-Notice": "1" });
    const ack = await store(JSON.stringify({ stream: victimStream, seq: 1 }));

    const bobInbox = inboxPrefixFor(bob.signPubHex);
    const aliceInbox = inboxPrefixFor(alice.signPubHex);
    const directGets: Array<[number, string]> = [
      [userRecord, `$KV.UNIBUS_users.${forged.signPubHex}`],
      [userRecord, `$KV.UNIBUS_nonces.${forged.signPubHex}`],
      [purgeAll, "$JS.API.STREAM.PURGE.KV_UNIBUS_nonces"],
      [purgeAll, "$JS.API.STREAM.DELETE.KV_UNIBUS_users"],
      [purgeAll, `$JS.API.STREAM.PURGE.${victimStream}`],
      [purgeAll, `$JS.API.STREAM.DELETE.${victimStream}`],
      [purgeAll, `$JS.API.STREAM.PURGE.${ownStream}`],
      [repoint, `$JS.API.STREAM.UPDATE.${ownStream}`],
      [create, "$JS.API.STREAM.CREATE.EVIL"],
      [refresh, `${bobInbox}.unibus.refresh`],
      [refresh, `${aliceInbox}.unibus.refresh`],
      [roomNotice, `${bobInbox}.unibus.room`],
      [ack, `${bobInbox}.unibus.ack.x`],
      [userRecord, plain.subject],
      [userRecord, wireSubject(victim)],
    ];
    for (const [seq, reply] of directGets) {
      m.publish(`$JS.API.DIRECT.GET.${ownStream}`, enc.encode(JSON.stringify({ seq })), { reply });
    }
    // The stream's own acks, aimed the same way.
    for (
      const reply of [
        `$KV.UNIBUS_nonces.${forged.signPubHex}`,
        `$JS.API.STREAM.PURGE.${victimStream}`,
        `$JS.API.STREAM.PURGE.${ownStream}`,
        wireSubject(victim),
        plain.subject,
        `${bobInbox}.unibus.refresh`,
        `${bobInbox}.unibus.room`,
      ]
    ) {
      m.publish(ownWire, enc.encode("junk"), { reply });
    }
    await m.flush();
    // The removed member, and any non-member, cannot read the victim's stream.
    await publishDenied(m, `$JS.API.DIRECT.GET.${victimStream}`);
    await publishDenied(m, `$JS.API.STREAM.INFO.${victimStream}`);
    // Everything above is answered within a moment; give it a second, bounded.
    await new Promise((r) => setTimeout(r, 1000));
    await taps.users.flush();

    // The reflections reached their targets' subjects...
    assert(
      (landed[`${bobInbox}.unibus.>`] ?? 0) >= 5,
      `reflections on bob's notice subjects: ${JSON.stringify(landed)}`,
    );
    assert((landed[plain.subject] ?? 0) >= 2, `reflections on the plain room: ${landed}`);
    assert(
      (landed[wireSubject(victim)] ?? 0) >= 2,
      `reflections on the victim's wire subject: ${JSON.stringify(landed)}`,
    );
    // ...and changed nothing: the control plane's streams, every room stream
    // but the attacker's own (which holds what it stored), no new stream.
    const after = { ctrl: await streamsOf(taps.ctrl), rooms: await streamsOf(taps.rooms) };
    assertEquals(after.ctrl, before.ctrl, "the control plane's streams are unchanged");
    const { [ownStream]: ownAfter, ...roomsAfter } = after.rooms;
    const { [ownStream]: ownBefore, ...roomsBefore } = before.rooms;
    assertEquals(roomsAfter, roomsBefore, "every other room stream is unchanged");
    assertEquals(
      JSON.parse(ownAfter).subjects,
      JSON.parse(ownBefore).subjects,
      "the attacker's stream still captures only its room",
    );
    assert(!("EVIL" in after.rooms) && !("EVIL" in after.ctrl), "no stream was created");
    // The forged user record admits nobody.
    await connectAs(portOf(env.natsUrls[0]), busUserOf(forged)).then(
      async (nc) => {
        await nc.close();
        throw new Error("the forged user was admitted");
      },
      (err) => assert(/Authorization Violation/i.test(String(err)), String(err)),
    );
    // Bob's client acted on nothing: no refresh, no message but the genuine ones.
    assertEquals(bobReconnects, 0, "bob's client did not refresh on a reflected notice");
    assertEquals(heard.sort(), ["genuine 1", "genuine 2"], "bob accepted no reflected message");
    assert(subs[0].stats.invalid + subs[1].stats.invalid > 0, "the reflections were refused");
    // History still reads the genuine message, and only it.
    const { messages } = await cb.history(victim);
    assertEquals(messages.map((x) => new TextDecoder().decode(x.plaintext)), ["genuine 1"]);
  } finally {
    for (const c of open.reverse()) await c.close().catch(() => {});
  }
}
