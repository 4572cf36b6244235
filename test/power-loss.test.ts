/**
 * Power losses on a disk whose volatile cache writes sectors back in any order: after random
 * ops of a random program (the programs of io-faults.test.ts: puts with and without TTL,
 * removes, transactions small and large, flush, clear, sweep, compact, reopen; 512-byte pages
 * and a 4 KiB checkpoint threshold), a copy of the files loses power keeping any subset of the
 * 512-byte sectors written since their last sync (`MemoryBackend.crash({ keepSector })`), and
 * for half of them the unsynced directory changes too. The reopen must succeed, pass both
 * consistency checks, and show one model state from the last one the policy promised durable
 * up to what memory showed: no promised write lost, no half transaction, and no
 * EMDB_CORRUPTED for bytes that were never promised (a WAL whose unsynced records survived
 * with a hole before them used to be refused that way).
 */
import { test } from "node:test";
import { everyN, type FlushPolicy, manual, onEachWrite } from "../src/index.js";
import { sectorLossRun } from "./helpers/fault-harness.js";
import { durableFloors, generate } from "./helpers/fault-program.js";
import { Prng, testSeed, withSeed } from "./helpers/prng.js";

function run(policy: FlushPolicy, seeds: number): void {
  const base = testSeed();
  let losses = 0;
  for (let round = 0; round < seeds; round++) {
    const seed = (base + round) >>> 0;
    withSeed(seed, () => {
      const rng = new Prng(seed);
      const p = generate(rng, 120, policy.kind === "onEachWrite");
      losses += sectorLossRun(p, policy, durableFloors(p, policy), rng, 0.2);
    });
  }
  if (losses < seeds * 10) throw new Error(`only ${losses} power losses were tried`);
}

for (const [name, policy] of [
  ["manual()", manual()],
  ["everyN(4)", everyN(4)],
  ["onEachWrite()", onEachWrite()],
] as const) {
  test(`${name}: a power loss keeping any unsynced sectors reopens to a state the policy allows`, () => {
    run(policy, 12);
  });
}
