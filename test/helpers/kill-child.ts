/**
 * Child processes for tests. `runKillableChild` runs a TypeScript child for the SIGKILL tests: optionally armed with a failpoint
 * (`EMDB_CRASH_AT`), reporting each line it prints so the caller can kill it at a chosen
 * moment. Resolves with whether the child died of SIGKILL; rejects if it failed otherwise.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";

export function runKillableChild(
  script: string,
  args: readonly string[],
  crashAt: string | undefined,
  onLine: (line: string, child: ChildProcess) => void,
): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (crashAt !== undefined) env.EMDB_CRASH_AT = crashAt;
    else delete env.EMDB_CRASH_AT;
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let buf = "";
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        onLine(line, child);
      }
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal === "SIGKILL") resolve(true);
      else if (code === 0) resolve(false);
      else reject(new Error(`child ${script} failed (code ${code}): ${stderr}`));
    });
  });
}

export interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node <args>` to its end and collects what it printed. */
export async function runToEnd(
  args: readonly string[],
  options: { cwd?: string; env: NodeJS.ProcessEnv },
): Promise<ChildResult> {
  const child = spawn(process.execPath, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}
