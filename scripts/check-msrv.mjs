// Fails when a publishable crate's `rust-version` is lower than the `rust-version` some dependency of it
// declares: that crate could not be built with the Rust it promises. Reads `cargo metadata` (Cargo.lock,
// every platform, the workspace's unified features) and walks each library crate's normal and build
// dependencies, transitively; dev-dependencies do not reach users. Prints, for each dependency that needs
// more, the crate that asks for it and the path it comes in by. Run through `make check-package`.
import { spawnSync } from "node:child_process";

const run = spawnSync("cargo", ["metadata", "--format-version", "1", "--locked"], {
  encoding: "utf8",
  maxBuffer: 1 << 30,
  stdio: ["ignore", "pipe", "inherit"],
});
if (run.status !== 0) {
  console.error("check-msrv: `cargo metadata` failed");
  process.exit(2);
}
const metadata = JSON.parse(run.stdout);

const parse = (v) => v.split(".").map(Number).concat([0, 0, 0]).slice(0, 3);
const compare = (a, b) => {
  const [pa, pb] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
};

const packages = new Map(metadata.packages.map((p) => [p.id, p]));
const nodes = new Map(metadata.resolve.nodes.map((n) => [n.id, n]));
const members = new Set(metadata.workspace_members);
// Publishable members: `publish` is null (anywhere) or a non-empty list of registries.
const libraries = [...members].map((id) => packages.get(id)).filter((p) => p.publish === null || p.publish.length > 0);

let failed = false;
for (const library of libraries) {
  if (!library.rust_version) {
    console.error(`check-msrv: ${library.name} declares no rust-version`);
    failed = true;
    continue;
  }
  // Breadth-first over normal and build dependencies, remembering how each crate was reached.
  const via = new Map([[library.id, null]]);
  const queue = [library.id];
  while (queue.length) {
    const id = queue.shift();
    for (const dep of nodes.get(id).deps) {
      if (via.has(dep.pkg) || !dep.dep_kinds.some((k) => k.kind === null || k.kind === "build")) continue;
      via.set(dep.pkg, id);
      queue.push(dep.pkg);
    }
  }
  const reached = [...via.keys()].filter((id) => id !== library.id).map((id) => packages.get(id));
  const needing = reached
    .filter((p) => p.rust_version && compare(p.rust_version, library.rust_version) > 0)
    .sort((a, b) => compare(b.rust_version, a.rust_version) || a.name.localeCompare(b.name));
  const highest = reached
    .filter((p) => p.rust_version && !members.has(p.id))
    .reduce((best, p) => (best && compare(best.rust_version, p.rust_version) >= 0 ? best : p), null);
  if (needing.length === 0) {
    const top = highest ? `; highest among its ${reached.length} dependencies: ${highest.name} ${highest.version} (${highest.rust_version})` : "";
    console.log(`${library.name}: rust-version ${library.rust_version}${top}`);
    continue;
  }
  failed = true;
  console.error(`${library.name}: rust-version ${library.rust_version} is lower than its dependencies need:`);
  const shown = 8;
  for (const p of needing.slice(0, shown)) {
    const path = [];
    for (let id = via.get(p.id); id !== null; id = via.get(id)) path.unshift(packages.get(id).name);
    console.error(`  ${p.name} ${p.version} needs Rust ${p.rust_version} (via ${path.join(" -> ")})`);
  }
  if (needing.length > shown) console.error(`  ... and ${needing.length - shown} more`);
}
if (failed) {
  console.error("raise `rust-version` in [workspace.package] of the root Cargo.toml (or hold the dependency back)");
  process.exit(1);
}
