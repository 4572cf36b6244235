/**
 * The README's examples are the API as users first meet it: every ```ts block must
 * type-check against the exported API under the project's strict settings and run to its
 * end. Each block becomes a module in a scratch directory (the working directory while they
 * run, so "data/app.emdb" lands there), with `from "emdb"` pointing at src/index.ts; a block
 * that uses `db` without opening one gets an in-memory database, and whatever `db` a block
 * has is closed after it, so the next block can open the same path. The README's first
 * command, `npm run demo`, must run and print what it did.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";
import { runToEnd } from "./helpers/kill-child.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const INDEX = path.join(ROOT, "src", "index.js");

function readmeBlocks(): { line: number; code: string }[] {
  const lines = fs.readFileSync(path.join(ROOT, "README.md"), "utf8").split("\n");
  const blocks: { line: number; code: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "```ts") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end] !== "```") end++;
    assert.ok(end < lines.length, `README.md:${i + 1}: a ts block is never closed`);
    blocks.push({ line: start + 1, code: lines.slice(start, end).join("\n") });
    i = end;
  }
  return blocks;
}

const IMPORT = /import \{([^}]*)\} from "emdb";/g;

/**
 * The block as a module: its import of "emdb" redirected, the names earlier blocks imported
 * (the README reads as one continuing script), and a `db` if it needs one.
 */
function asModule(code: string, earlier: ReadonlySet<string>): string {
  const own = new Set([...code.matchAll(IMPORT)].flatMap((m) => names(m[1]!)));
  const inherited = [...earlier].filter((n) => !own.has(n) && n !== "Emdb");
  const opens = /\b(?:const|let|using) db\b/.test(code);
  const head = [
    `import { Emdb as ReadmeEmdb${inherited.map((n) => `, ${n}`).join("")} } from ${JSON.stringify(INDEX)};`,
    opens ? "" : "const db = ReadmeEmdb.openInMemory();",
  ];
  const body = code.replaceAll(`from "emdb"`, `from ${JSON.stringify(INDEX)}`);
  return `${head.join("\n")}\n${body}\n;db.close();\n`;
}

function names(list: string): string[] {
  return list
    .split(",")
    .map((n) => n.trim().replace(/^type\s+/, ""))
    .filter((n) => n !== "");
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "emdb-readme-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const blocks = readmeBlocks();
// Without it the blocks would be CommonJS, which their `import` lines are not.
fs.writeFileSync(path.join(dir, "package.json"), '{ "type": "module" }\n');
const imported = new Set<string>();
const files = blocks.map((b, i) => {
  const file = path.join(dir, `block${i}-line${b.line}.ts`);
  fs.writeFileSync(file, asModule(b.code, imported));
  for (const m of b.code.matchAll(IMPORT)) for (const n of names(m[1]!)) imported.add(n);
  return file;
});

test("the README has its API examples", () => {
  // API, builder, iteration, transactions, TTL, groups at least.
  assert.ok(blocks.length >= 6, `only ${blocks.length} ts blocks found`);
});

test("every README example type-checks against the exported API", () => {
  const config = ts.readConfigFile(path.join(ROOT, "tsconfig.json"), ts.sys.readFile);
  const options = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT).options;
  const program = ts.createProgram(files, { ...options, noEmit: true, rootDir: "/" });
  const problems = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file === undefined || files.includes(path.resolve(d.file.fileName)))
    .map((d) => {
      const text = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      if (d.file === undefined || d.start === undefined) return text;
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      return `${path.basename(d.file.fileName)} line ${line + 1}: ${text}`;
    });
  assert.deepEqual(problems, []);
});

test("every README example runs to its end, in order, on disk where it says so", async () => {
  const cwd = process.cwd();
  fs.mkdirSync(path.join(dir, "data"));
  process.chdir(dir);
  try {
    for (const file of files) {
      try {
        await import(pathToFileURL(file).href);
      } catch (err) {
        if (err instanceof Error) err.message = `${path.basename(file)}: ${err.message}`;
        throw err;
      }
    }
  } finally {
    process.chdir(cwd);
  }
  assert.ok(fs.existsSync(path.join(dir, "data", "app.emdb")), "the file examples wrote to disk");
});

test("the README's first command, the demo, creates, writes, reopens and reads", async () => {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  assert.match(readme.split("\n").slice(0, 6).join("\n"), /npm ci && npm run demo/);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  assert.equal(pkg.scripts.demo, "tsx examples/demo.ts", "what `npm run demo` runs");
  // As `npm run demo` runs it: no arguments, so it makes its own directory (here, in ours).
  const r = await runToEnd(["--import", "tsx", path.join(ROOT, "examples", "demo.ts")], {
    cwd: ROOT,
    env: { ...process.env, TMPDIR: dir },
  });
  assert.equal(r.code, 0, r.stderr);
  const file = /database file (\S+)/.exec(r.stdout)?.[1];
  assert.ok(file?.startsWith(dir) && fs.existsSync(file), `the demo's file: ${file}`);
  const said = new Map(
    r.stdout
      .split("\n")
      .map((l) => /^(.+?)\s{2,}(\S.*)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => [m[1]!, m[2]!]),
  );
  assert.equal(said.get('get("user:4") after the rollback'), "null");
  assert.equal(said.get("close() and reopen → len()"), "4");
  assert.equal(said.get('after reopen: get("user:1")'), '"james"');
  assert.equal(said.get("check() (consistency problems)"), "[]");
  assert.equal(said.get("close() → get() throws"), '"EMDB_CLOSED"');
});
