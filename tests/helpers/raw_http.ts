/**
 * An HTTP/1.1 exchange over a raw loopback socket, so a test controls when
 * body bytes go out and from which local address (127.0.0.2 is another
 * source to the server, as another machine would be).
 *
 * @module
 */

import net from "node:net";
import { Buffer } from "node:buffer";

/** One request in flight. */
export interface RawExchange {
  /** Sends more of the body (a no-op once the server closed the connection). */
  send(bytes: Uint8Array | string): Promise<void>;
  /** The response (status and JSON body), or a failure after `ms`. */
  response(ms?: number): Promise<{ status: number; body: Record<string, unknown> }>;
  /** The response if it has fully arrived, else null; leaves the connection open. */
  peek(): { status: number; body: Record<string, unknown> } | null;
  close(): void;
}

/**
 * Opens a connection to 127.0.0.1:`port` (from `localAddress` when given),
 * sends the request head and `firstBytes` of the body.
 *
 * @example
 * ```ts
 * const x = await rawPost(port, "/v1/upload", { "content-length": "10" }, "12345");
 * await x.send("67890");
 * (await x.response()).status; // 200
 * ```
 */
export async function rawPost(
  port: number,
  path: string,
  headers: Record<string, string>,
  firstBytes: Uint8Array | string = "",
  opts: { localAddress?: string } = {},
): Promise<RawExchange> {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: opts.localAddress });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  let received = Buffer.alloc(0);
  let ended = false;
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  socket.on("data", (d: Buffer) => {
    received = Buffer.concat([received, d]);
    wake();
  });
  // A server that answers early closes while the test may still be sending.
  socket.on("error", () => {});
  socket.on("close", () => {
    ended = true;
    wake();
  });
  const write = (b: Uint8Array | string) =>
    new Promise<void>((resolve) => {
      if (ended || socket.destroyed) return resolve();
      socket.write(typeof b === "string" ? Buffer.from(b) : b, () => resolve());
    });
  const close = () => {
    ended = true;
    socket.destroy();
    wake();
  };
  const parse = () => {
    const end = received.indexOf("\r\n\r\n");
    if (end < 0) return null;
    const head = received.subarray(0, end).toString("latin1");
    const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
    if (received.byteLength < end + 4 + length) return null;
    const text = received.subarray(end + 4, end + 4 + length).toString("utf8");
    return { status: Number(head.slice(9, 12)), body: length > 0 ? JSON.parse(text) : {} };
  };

  await write(
    [
      `POST ${path} HTTP/1.1`,
      "Host: 127.0.0.1",
      "Connection: close",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ].join("\r\n"),
  );
  await write(firstBytes);
  return {
    send: write,
    close,
    peek: parse,
    async response(ms = 5000) {
      const deadline = Date.now() + ms;
      try {
        while (true) {
          const res = parse();
          if (res) return res;
          const left = deadline - Date.now();
          if (ended || left <= 0) break;
          await new Promise<void>((r) => {
            const t = setTimeout(r, left);
            waiters.push(() => {
              clearTimeout(t);
              r();
            });
          });
        }
      } finally {
        close();
      }
      throw new Error(
        `no complete response within ${ms} ms; got ${JSON.stringify(received.toString("latin1"))}`,
      );
    },
  };
}
