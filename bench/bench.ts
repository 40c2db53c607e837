/**
 * `deno task bench [--quick] [--runs N] [--size-mib N] [--only w1,w2,w3,w4]`: Accio against iperf3
 * (the loopback ceiling), OpenBSD netcat and the Python seed-style peers, in
 * the same run, on files in a tmpfs. Programs alternate within every run;
 * medians with min and max are reported, and each ratio to nc pair by pair.
 * Writes bench/results/latest.{json,md} and bench/results/throughput.svg.
 *
 * @module
 */
import {
  freePort,
  makeFile,
  PEERS,
  Proc,
  ROOT,
  sha256File,
  spawnProgram,
  waitFor,
} from "../tests/helpers.ts";
import { type Job, runLoad, runSmallLoad } from "./load.ts";

const argv = Deno.args;
const quick = argv.includes("--quick");
const option = (name: string, fallback: number) => {
  const at = argv.indexOf(name);
  return at === -1 ? fallback : Number(argv[at + 1]);
};
const only = argv.includes("--only") ? argv[argv.indexOf("--only") + 1].split(",") : undefined;
const wanted = (workload: string) => only === undefined || only.includes(workload);
const config = {
  runs: option("--runs", quick ? 1 : 5),
  bigMiB: option("--size-mib", quick ? 16 : 1024),
  parallelCount: quick ? 10 : 200,
  parallelMiB: quick ? 1 : 8,
  smallCount: quick ? 200 : 5000,
  smallInFlight: 50,
  idleCount: quick ? 100 : 1000,
};
const MiB = 1024 * 1024;

async function has(command: string): Promise<boolean> {
  const out = await new Deno.Command("sh", { args: ["-c", `command -v ${command}`], stdout: "null" })
    .output();
  return out.success;
}

/** nc and iperf3 come from Debian's packages; install them when we can, else say so and go on without. */
async function ensurePeers(): Promise<{ nc: boolean; iperf3: boolean }> {
  if (!(await has("nc") && await has("iperf3")) && Deno.uid() === 0 && await has("apt-get")) {
    console.error("bench: installing netcat-openbsd and iperf3 (Debian packages) ...");
    await new Deno.Command("sh", {
      args: [
        "-c",
        "apt-get install -y -qq netcat-openbsd iperf3 || (apt-get update -qq && apt-get install -y -qq netcat-openbsd iperf3)",
      ],
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "null",
      stderr: "null",
    }).output();
  }
  const peers = { nc: await has("nc"), iperf3: await has("iperf3") };
  if (!peers.nc) console.error("bench: nc missing: install netcat-openbsd; netcat figures skipped");
  if (!peers.iperf3) console.error("bench: iperf3 missing: install iperf3; ceiling figures skipped");
  return peers;
}

async function listening(port: number): Promise<boolean> {
  const out = await new Deno.Command("ss", { args: ["-Hltn", `sport = :${port}`], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).trim() !== "";
}

const sh = (script: string) => new Proc("sh", ["-c", script]);

/** `count` different free ports: all held open until all are chosen, so none repeats. */
function distinctPorts(count: number): number[] {
  const listeners = Array.from({ length: count }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  listeners.forEach((l) => l.close());
  return ports;
}

async function freshDir(base: string, name: string): Promise<string> {
  const dir = `${base}/${name}`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** Files in `dir` hashed, as a sorted list, for multiset comparison with the sources. */
async function hashes(paths: string[]): Promise<string[]> {
  return (await Promise.all(paths.map(sha256File))).sort();
}

async function savedFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (!e.name.startsWith(".")) names.push(`${dir}/${e.name}`);
  return names;
}

async function startAccio(dir: string): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const proc = spawnProgram("server", ["--quiet", String(port), dir]);
  await waitFor(() => listening(port), 10_000, "the accio server");
  return { proc, port };
}

async function startPython(dir: string): Promise<{ proc: Proc; port: number }> {
  const port = freePort();
  const proc = new Proc("python3", ["-u", `${PEERS}seed_server.py`, String(port), dir]);
  await waitFor(() => proc.stderr.includes("listening"), 10_000, "the python server");
  return { proc, port };
}

type Sample = { value: number; run: number };
const results: Record<string, Record<string, Sample[]>> = {};
const note = (workload: string, program: string, value: number, run: number) => {
  ((results[workload] ??= {})[program] ??= []).push({ value, run });
};

// ---- workload 1 (and 5): one big upload --------------------------------------------------------

async function bigUpload(program: string, source: string, base: string, run: number): Promise<void> {
  const bytes = config.bigMiB * MiB;
  const dir = await freshDir(base, "w1");
  let ms: number;
  if (program === "iperf3") {
    const port = freePort();
    await using server = new Proc("iperf3", ["-s", "-1", "-p", String(port)]);
    await waitFor(() => listening(port), 10_000, "iperf3");
    await using client = new Proc("iperf3", [
      "-c",
      "127.0.0.1",
      "-p",
      String(port),
      "-n",
      String(bytes),
      "-J",
    ]);
    await client.wait(300_000);
    await server.wait(10_000);
    const report = JSON.parse(client.stdout);
    note("w1", program, report.end.sum_received.bits_per_second / 8 / MiB, run);
    return;
  }
  if (program === "accio") {
    const server = await startAccio(dir);
    server.proc.trackMemory(10);
    const started = performance.now();
    await using client = spawnProgram("client", ["127.0.0.1", String(server.port), source]);
    client.trackMemory(10);
    const status = await client.wait(600_000);
    ms = performance.now() - started;
    if (status.code !== 0) throw new Error(`accio client failed: ${client.stderr}`);
    await server.proc.stop("SIGTERM");
    note("w5", "server peak RSS MiB", server.proc.peakRssKiB / 1024, run);
    note("w5", "client peak RSS MiB", client.peakRssKiB / 1024, run);
  } else if (program === "nc") {
    const port = freePort();
    await using server = sh(`exec nc -d -l 127.0.0.1 ${port} > "${dir}/1.file"`);
    await waitFor(() => listening(port), 10_000, "nc -l");
    const started = performance.now();
    await using client = sh(`exec nc -N 127.0.0.1 ${port} < "${source}"`);
    await Promise.all([client.wait(600_000), server.wait(600_000)]);
    ms = performance.now() - started;
  } else {
    await using server = await startPython(dir).then((s) => s.proc);
    const port = Number(/listening on (\d+)/.exec(server.stderr)![1]);
    const started = performance.now();
    await using client = new Proc("python3", [`${PEERS}seed_client.py`, "127.0.0.1", String(port), source]);
    if ((await client.wait(600_000)).code !== 0) throw new Error(`python client failed: ${client.stderr}`);
    ms = performance.now() - started;
  }
  const [saved] = await savedFiles(dir);
  if (await sha256File(saved) !== await sha256File(source)) {
    throw new Error(`${program}: workload 1 file differs`);
  }
  note("w1", program, bytes / MiB / (ms / 1000), run);
  await Deno.remove(dir, { recursive: true });
}

// ---- workload 2: many simultaneous uploads -----------------------------------------------------

async function parallelUploads(
  program: string,
  sources: string[],
  sourceHashes: string[],
  base: string,
  run: number,
) {
  const dir = await freshDir(base, "w2");
  let ms: number;
  if (program === "nc") {
    const ports = distinctPorts(sources.length);
    const servers = ports.map((port, i) => sh(`exec nc -d -l 127.0.0.1 ${port} > "${dir}/${i + 1}.file"`));
    try {
      await waitFor(
        async () => (await Promise.all(ports.map(listening))).every(Boolean),
        20_000,
        "nc listeners",
      );
      const jobs: Job[] = sources.map((path, i) => ({ port: ports[i], path }));
      const started = performance.now();
      await runLoad(jobs, jobs.length, "raw");
      await Promise.all(servers.map((s) => s.wait(120_000)));
      ms = performance.now() - started;
    } finally {
      await Promise.all(servers.map((s) => s[Symbol.asyncDispose]()));
    }
  } else {
    const server = program === "accio" ? await startAccio(dir) : await startPython(dir);
    try {
      const jobs: Job[] = sources.map((path) => ({ port: server.port, path }));
      ms = await runLoad(jobs, jobs.length, "accio");
    } finally {
      await server.proc.stop("SIGTERM");
    }
  }
  const got = await hashes(await savedFiles(dir));
  if (JSON.stringify(got) !== JSON.stringify(sourceHashes)) {
    throw new Error(`${program}: workload 2 files differ`);
  }
  note("w2", program, (sources.length * config.parallelMiB) / (ms / 1000), run);
  await Deno.remove(dir, { recursive: true });
}

// ---- workload 3: many small uploads ------------------------------------------------------------

async function smallUploads(program: string, smallSources: string[], base: string, run: number) {
  const dir = await freshDir(base, "w3");
  const server = program === "accio" ? await startAccio(dir) : await startPython(dir);
  try {
    const contents = await Promise.all(smallSources.map((path) => Deno.readFile(path)));
    const ms = await runSmallLoad(server.port, contents, config.smallCount, config.smallInFlight);
    note("w3", program, config.smallCount / (ms / 1000), run);
  } finally {
    await server.proc.stop("SIGTERM");
  }
  const count = (await savedFiles(dir)).length;
  if (count !== config.smallCount) throw new Error(`${program}: workload 3 saved ${count} files`);
  await Deno.remove(dir, { recursive: true });
}

// ---- workload 4: idle connections --------------------------------------------------------------

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0);
}

async function idleConnections(program: string, base: string, run: number) {
  const dir = await freshDir(base, "w4");
  const server = program === "accio" ? await startAccio(dir) : await startPython(dir);
  const conns: Deno.TcpConn[] = [];
  try {
    await new Promise((r) => setTimeout(r, 300));
    const before = rssKiB(server.proc.pid);
    const greeting = new Uint8Array(7);
    for (let i = 0; i < config.idleCount; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      conns.push(conn);
      for (let got = 0; got < 7;) got += (await conn.read(greeting.subarray(got))) ?? 7;
    }
    await new Promise((r) => setTimeout(r, 500));
    const after = rssKiB(server.proc.pid);
    note("w4", program, (after - before) / config.idleCount, run);
  } finally {
    conns.forEach((c) => c.close());
    await server.proc.stop("SIGTERM");
    await Deno.remove(dir, { recursive: true });
  }
}

// ---- statistics and reports --------------------------------------------------------------------

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const summarize = (samples: Sample[]) => {
  const values = samples.map((s) => s.value);
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values.length };
};
/** Median over runs of (program / nc) in the same run. */
function pairedRatio(workload: string, program: string, baseline = "nc"): number | undefined {
  const mine = results[workload]?.[program] ?? [];
  const theirs = results[workload]?.[baseline] ?? [];
  const ratios = mine.flatMap((m) => {
    const t = theirs.find((x) => x.run === m.run);
    return t ? [m.value / t.value] : [];
  });
  return ratios.length ? median(ratios) : undefined;
}

const labels: Record<string, [string, string]> = {
  w1: [`1: one ${config.bigMiB} MiB upload`, "MiB/s"],
  w2: [`2: ${config.parallelCount} simultaneous ${config.parallelMiB} MiB uploads`, "MiB/s aggregate"],
  w3: [`3: ${config.smallCount} x 1 KiB uploads, ${config.smallInFlight} in flight`, "uploads/s"],
  w4: [`4: ${config.idleCount} idle connections`, "KiB of server RSS per connection"],
  w5: [`5: peak RSS during workload 1`, "MiB"],
};

async function machine(): Promise<string> {
  const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ?? "unknown CPU";
  return `${navigator.hardwareConcurrency} cores (${cpu}), ${
    Math.round(Deno.systemMemoryInfo().total / 2 ** 30)
  } GiB, ` +
    `Linux ${Deno.osRelease()}, Deno ${Deno.version.deno}`;
}

function markdown(machineLine: string): string {
  const where = Deno.env.get("ACCIO_BENCH_TMPFS") ? "a tmpfs" : "the temp directory on disk";
  const lines = [
    `# Benchmark results`,
    "",
    `${
      new Date().toISOString()
    }; ${machineLine}; ${config.runs} run(s), programs alternating; files in ${where}.`,
    "",
    "| workload | program | median | min | max | unit | ratio to nc (paired median) |",
    "| --- | --- | ---: | ---: | ---: | --- | ---: |",
  ];
  for (const [workload, programs] of Object.entries(results)) {
    for (const [program, samples] of Object.entries(programs)) {
      const s = summarize(samples);
      const ratio = pairedRatio(workload, program);
      const f = (x: number) => x.toFixed(x >= 100 ? 0 : 1);
      lines.push(
        `| ${labels[workload][0]} | ${program} | ${f(s.median)} | ${f(s.min)} | ${f(s.max)} | ${
          labels[workload][1]
        } | ${ratio === undefined || program === "nc" ? "" : `${ratio.toFixed(2)}x`} |`,
      );
    }
  }
  const ceiling = pairedRatio("w1", "accio", "iperf3");
  if (ceiling) lines.push("", `Workload 1, accio / iperf3 ceiling (paired median): ${ceiling.toFixed(2)}x.`);
  return lines.join("\n") + "\n";
}

function chart(): string {
  const groups = ["w1", "w2"].filter((w) => results[w]);
  const programs = ["accio", "nc", "python", "iperf3"];
  const colors: Record<string, string> = {
    accio: "#2b7bb9",
    nc: "#d95f02",
    python: "#7570b3",
    iperf3: "#999999",
  };
  const max = Math.max(...groups.flatMap((w) => Object.values(results[w]).map((s) => summarize(s).median)));
  const width = 760,
    height = 360,
    left = 70,
    bottom = 60,
    top = 40,
    groupWidth = (width - left - 20) / groups.length;
  const y = (v: number) => height - bottom - (v / max) * (height - bottom - top);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${
      width / 2
    }" y="22" text-anchor="middle" font-size="15">Throughput, MiB/s (median of ${config.runs} run(s); higher is better)</text>`,
    `<line x1="${left}" y1="${height - bottom}" x2="${width - 10}" y2="${height - bottom}" stroke="black"/>`,
  ];
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    parts.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
    parts.push(`<line x1="${left}" y1="${y(v)}" x2="${width - 10}" y2="${y(v)}" stroke="#ddd"/>`);
  }
  groups.forEach((w, g) => {
    const present = programs.filter((p) => results[w][p]);
    const barWidth = (groupWidth - 40) / present.length;
    present.forEach((p, i) => {
      const v = summarize(results[w][p]).median;
      const x = left + g * groupWidth + 20 + i * barWidth;
      parts.push(
        `<rect x="${x}" y="${y(v)}" width="${barWidth - 6}" height="${height - bottom - y(v)}" fill="${
          colors[p]
        }"/>`,
      );
      parts.push(
        `<text x="${x + (barWidth - 6) / 2}" y="${y(v) - 4}" text-anchor="middle">${v.toFixed(0)}</text>`,
      );
      parts.push(
        `<text x="${x + (barWidth - 6) / 2}" y="${height - bottom + 16}" text-anchor="middle">${p}</text>`,
      );
    });
    parts.push(
      `<text x="${left + g * groupWidth + groupWidth / 2}" y="${
        height - 18
      }" text-anchor="middle" font-weight="bold">${labels[w][0]}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

// ---- main --------------------------------------------------------------------------------------

// Files live in a tmpfs so the disk does not hide the data path. /dev/shm is out of reach: Deno's permission
// model wants --allow-all for anything under /dev. As root, re-run inside a private mount namespace with a
// tmpfs of our own (gone when the bench ends); otherwise fall back to the temp directory, and say so.
const TMPFS = "/tmp/accio-bench-tmpfs";
if (Deno.env.get("ACCIO_BENCH_TMPFS") === undefined && Deno.uid() === 0 && await has("unshare")) {
  await Deno.mkdir(TMPFS, { recursive: true });
  const self = [Deno.execPath(), "run", "--allow-all", new URL(import.meta.url).pathname, ...argv];
  const status = await new Deno.Command("unshare", {
    args: [
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t tmpfs -o size=12g tmpfs ${TMPFS} && exec "$@"`,
      "sh",
      ...self,
    ],
    env: { ACCIO_BENCH_TMPFS: TMPFS },
  }).spawn().status;
  Deno.exit(status.code);
}
const tmpfs = Deno.env.get("ACCIO_BENCH_TMPFS");
if (!tmpfs) console.error("bench: not root: files go to the temp directory on disk, not a tmpfs");
const peers = await ensurePeers();
const base = await Deno.makeTempDir({
  dir: tmpfs ?? Deno.env.get("TMPDIR") ?? "/tmp",
  prefix: "accio-bench-",
});
try {
  console.error(`bench: ${JSON.stringify(config)} in ${base}`);
  const big = await makeFile(base, "big.bin", config.bigMiB * MiB, 1);
  const parallel = await Promise.all(
    Array.from(
      { length: config.parallelCount },
      (_, i) => makeFile(base, `p${i}.bin`, config.parallelMiB * MiB, 100 + i),
    ),
  );
  const parallelHashes = await hashes(parallel);
  const small = await Promise.all(
    Array.from({ length: 100 }, (_, i) => makeFile(base, `s${i}.bin`, 1024, 1000 + i)),
  );
  const rotate = <T>(xs: T[], by: number) => xs.map((_, i) => xs[(i + by) % xs.length]);
  const bigPrograms = ["accio", ...(peers.nc ? ["nc"] : []), "python", ...(peers.iperf3 ? ["iperf3"] : [])];
  const parallelPrograms = ["accio", ...(peers.nc ? ["nc"] : []), "python"];
  for (let run = 0; run < config.runs; run++) {
    for (const p of wanted("w1") ? rotate(bigPrograms, run) : []) {
      console.error(`bench: run ${run + 1}/${config.runs} workload 1 ${p}`);
      await bigUpload(p, big, base, run);
    }
    for (const p of wanted("w2") ? rotate(parallelPrograms, run) : []) {
      console.error(`bench: run ${run + 1}/${config.runs} workload 2 ${p}`);
      await parallelUploads(p, parallel, parallelHashes, base, run);
    }
    for (const p of wanted("w3") ? rotate(["accio", "python"], run) : []) {
      console.error(`bench: run ${run + 1}/${config.runs} workload 3 ${p}`);
      await smallUploads(p, small, base, run);
    }
    for (const p of wanted("w4") ? rotate(["accio", "python"], run) : []) await idleConnections(p, base, run);
  }
} finally {
  await Deno.remove(base, { recursive: true });
}

const machineLine = await machine();
const out = `${ROOT}bench/results/${quick || only ? "quick" : "latest"}`;
await Deno.writeTextFile(
  `${out}.json`,
  JSON.stringify({ date: new Date().toISOString(), machine: machineLine, config, results }, null, 2) + "\n",
);
await Deno.writeTextFile(`${out}.md`, markdown(machineLine));
if (!quick && !only) await Deno.writeTextFile(`${ROOT}bench/results/throughput.svg`, chart());
console.log(markdown(machineLine));
