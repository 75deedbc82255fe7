/**
 * Runs a TypeScript source text as its own Deno process with the project's
 * import map, for tests that need a separate program (another client, or a
 * process whose fate is the thing under test).
 *
 * @module
 */

/** What the script did. */
export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Writes `source` to a temporary file, runs it with `deno run -A` and the
 * project's deno.json, and removes the file.
 *
 * @example
 * ```ts
 * const r = await runScript(`console.log("hi")`);
 * r.stdout; // "hi\n"
 * ```
 */
export async function runScript(source: string): Promise<ScriptRun> {
  const dir = await Deno.makeTempDir({ prefix: "unibus-script-" });
  try {
    const file = `${dir}/script.ts`;
    await Deno.writeTextFile(file, source);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "-A",
        "--config",
        new URL("../../deno.json", import.meta.url).pathname,
        file,
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
