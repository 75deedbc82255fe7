/**
 * Writes dist/npm/: the client library (lib/client/mod.ts and what it
 * imports) as an npm package for Node.js ≥ 20, ES modules with `.d.ts`,
 * compiled by TypeScript's own compiler from the same sources Deno runs (no
 * second copy of the client). Its dependencies are the npm packages the
 * compiled code imports, at the versions deno.json pins.
 *
 *   bash scripts/build-npm
 *
 * Work happens in .tools/npm-build/ (sources copied there next to the
 * compiler and the dependencies' types, so imports resolve as on Node).
 *
 * @module
 */

import { VERSION } from "../lib/version.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const WORK = `${ROOT}/.tools/npm-build`;
const OUT = `${ROOT}/dist/npm`;
/** The compiler and Node's types: build tools only, never the package's dependencies. */
const BUILD_TOOLS = { "typescript": "5.9.3", "@types/node": "20.19.43" };
/** Node.js built-ins and the one Deno-only name the sources mention (lib/platform). */
const DENO_SHIM = `// Under Node.js these are never reached (lib/platform/mod.ts checks isDeno).
declare namespace Deno {
  const errors: { NotFound: new (message?: string) => Error };
  function unrefTimer(id: number): void;
  function createHttpClient(options: { caCerts: string[] }): { close(): void };
}
`;

/** deno.json's npm pins: package name → version. */
async function npmPins(): Promise<Map<string, string>> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const pins = new Map<string, string>();
  for (const target of Object.values(config.imports as Record<string, string>)) {
    const m = /^npm:\/?((?:@[^/@]+\/)?[^/@]+)@([^/]+)\/?$/.exec(target);
    if (m) pins.set(m[1], m[2]);
  }
  return pins;
}

async function run(cmd: string, args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "inherit", stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code})`);
}

/** The bare package names the compiled files import (not relative, not node:). */
async function importedPackages(dir: string): Promise<Set<string>> {
  const found = new Set<string>();
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".js")) {
        const text = await Deno.readTextFile(p);
        // `… from "x"`, `import("x")` and a bare `import "x"`, as tsc writes them.
        const specs = /\bfrom "([^"]+)"|\bimport\("([^"]+)"\)|^import "([^"]+)"/gm;
        for (const m of text.matchAll(specs)) {
          const spec = m[1] ?? m[2] ?? m[3];
          // Relative, built in, or this package named in a JSDoc example.
          if (/^(\.|node:|@unibus\/)/.test(spec)) continue;
          const parts = spec.split("/");
          found.add(spec.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]);
        }
      }
    }
  };
  await walk(dir);
  return found;
}

const pins = await npmPins();
await Deno.remove(`${WORK}/src`, { recursive: true }).catch(() => {});
await Deno.mkdir(`${WORK}/src`, { recursive: true });
await run("cp", ["-r", `${ROOT}/lib`, `${WORK}/src/lib`], ROOT);
await Deno.writeTextFile(`${WORK}/src/deno_shim.d.ts`, DENO_SHIM);

// Every npm package deno.json pins, so the compiler finds each import's types.
const deps = Object.fromEntries([...pins].filter(([name]) => name !== "@modelcontextprotocol/sdk"));
await Deno.writeTextFile(
  `${WORK}/package.json`,
  JSON.stringify(
    { private: true, type: "module", dependencies: { ...deps, ...BUILD_TOOLS } },
    null,
    2,
  ),
);
await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], WORK);

await Deno.remove(OUT, { recursive: true }).catch(() => {});
await Deno.writeTextFile(
  `${WORK}/tsconfig.json`,
  JSON.stringify(
    {
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        rewriteRelativeImportExtensions: true,
        declaration: true,
        strict: true,
        skipLibCheck: true,
        lib: ["ES2024", "DOM"],
        types: ["node"],
        rootDir: "src",
        outDir: OUT,
      },
      files: ["src/lib/client/mod.ts", "src/deno_shim.d.ts"],
    },
    null,
    2,
  ),
);
await run(`${WORK}/node_modules/.bin/tsc`, ["-p", "tsconfig.json"], WORK);

const used = await importedPackages(OUT);
const dependencies: Record<string, string> = {};
for (const name of [...used].sort()) {
  const version = pins.get(name);
  if (!version) {
    throw new Error(`the compiled client imports ${name}, which deno.json does not pin`);
  }
  dependencies[name] = version;
}
await Deno.writeTextFile(
  `${OUT}/package.json`,
  JSON.stringify(
    {
      name: "@unibus/client",
      version: VERSION,
      description: "unibus client: end-to-end encrypted, signed rooms on NATS (Node.js build)",
      type: "module",
      engines: { node: ">=20" },
      exports: { ".": { types: "./lib/client/mod.d.ts", import: "./lib/client/mod.js" } },
      dependencies,
    },
    null,
    2,
  ) + "\n",
);
console.log(
  `wrote ${OUT}: @unibus/client ${VERSION}, ES modules and .d.ts by tsc ${BUILD_TOOLS.typescript}; dependencies ${
    Object.entries(dependencies).map(([n, v]) => `${n}@${v}`).join(", ")
  }`,
);
