/**
 * Checks that nats-server refuses a publish or a subscription, through the
 * permission violations it reports. Only nats.js: a test of a stock client
 * uses these without importing anything of unibus.
 *
 * @module
 */

import { type NatsConnection, PermissionViolationError } from "@nats-io/transport-node";

/**
 * Resolves with the permission violation the server reports for publishing
 * to `subject`, or throws if none arrives. With `send: false` it only waits
 * (the caller makes the publish happen some other way).
 *
 * @example
 * ```ts
 * await publishDenied(nc, "$SYS.REQ.SERVER.PING");
 * ```
 */
export async function publishDenied(
  nc: NatsConnection,
  subject: string,
  opts: { send?: boolean } = {},
): Promise<void> {
  const seen = Promise.withResolvers<void>();
  const timer = setTimeout(
    () => seen.reject(new Error(`publish to ${subject} was not denied`)),
    3000,
  );
  (async () => {
    for await (const s of nc.status()) {
      if (
        s.type === "error" && s.error instanceof PermissionViolationError &&
        s.error.message.includes(`"${subject}"`)
      ) {
        seen.resolve();
        return;
      }
    }
  })();
  if (opts.send !== false) nc.publish(subject, "probe");
  await nc.flush().catch(() => {});
  try {
    await seen.promise;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves when the server refuses a subscription to `subject`.
 *
 * @example
 * ```ts
 * await subscribeDenied(nc, ">");
 * ```
 */
export async function subscribeDenied(nc: NatsConnection, subject: string): Promise<void> {
  const seen = Promise.withResolvers<void>();
  const timer = setTimeout(
    () => seen.reject(new Error(`subscription to ${subject} was not denied`)),
    3000,
  );
  nc.subscribe(subject, {
    callback: (err) => {
      if (err instanceof PermissionViolationError) seen.resolve();
    },
  });
  await nc.flush().catch(() => {});
  try {
    await seen.promise;
  } finally {
    clearTimeout(timer);
  }
}
