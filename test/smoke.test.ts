import assert from "node:assert/strict";
import { test } from "node:test";
import { EmdbError } from "../src/errors.js";

test("EmdbError carries a stable code", () => {
  const e = new EmdbError("EMDB_CLOSED");
  assert.equal(e.code, "EMDB_CLOSED");
  assert.ok(e instanceof Error);
});
