/**
 * Writes dist/npm/: the client library (lib/client/mod.ts and what it
 * imports) as an npm package for Node.js ≥ 20, ES modules with `.d.ts`,
 * compiled by TypeScript's own compiler from the same sources Deno runs (no
 * second copy of the client). Its dependencies are the npm packages that
 * module graph imports, at the versions deno.json pins.
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

/**
 * The npm packages the client's module graph imports, at the versions Deno
 * resolved them to (deno.json's pins, locked by deno.lock): name → version.
 * Asked of `deno info`, so nothing else (server, CLI, MCP) is pulled in.
 */
async function clientPackages(): Promise<Map<string, string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${ROOT}/lib/client/mod.ts`],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("deno info lib/client/mod.ts failed");
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: Array<{ specifier: string }>;
  };
  const packages = new Map<string, string>();
  for (const { specifier } of graph.modules) {
    const m = /^npm:\/((?:@[^/@]+\/)?[^/@]+)@([^/]+)/.exec(specifier);
    if (m) packages.set(m[1], m[2]);
  }
  return packages;
}

async function run(cmd: string, args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "inherit", stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code})`);
}

const dependencies = Object.fromEntries([...await clientPackages()].sort());
await Deno.remove(`${WORK}/src`, { recursive: true }).catch(() => {});
await Deno.mkdir(`${WORK}/src`, { recursive: true });
await run("cp", ["-r", `${ROOT}/lib`, `${WORK}/src/lib`], ROOT);
await Deno.writeTextFile(`${WORK}/src/deno_shim.d.ts`, DENO_SHIM);

// The client's packages and the build tools, so the compiler finds each import's types.
await Deno.writeTextFile(
  `${WORK}/package.json`,
  JSON.stringify(
    { private: true, type: "module", dependencies: { ...dependencies, ...BUILD_TOOLS } },
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
