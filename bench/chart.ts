/**
 * The throughput chart of workloads 1 and 2 (bench/results/throughput.svg):
 * one group of bars per workload, one bar per program, at its median.
 *
 * @module
 */
import type { BenchConfig } from "./options.ts";
import { labels, type Results, summarize } from "./report.ts";

const PROGRAMS = ["accio", "nc", "python", "iperf3"];
const COLORS: Record<string, string> = {
  accio: "#2b7bb9",
  nc: "#d95f02",
  python: "#7570b3",
  iperf3: "#999999",
};
const WIDTH = 760, HEIGHT = 360, LEFT = 70, BOTTOM = 60, TOP = 40;

/** The y coordinate of value `v` on an axis that ends at `max`. */
const yOf = (v: number, max: number) => HEIGHT - BOTTOM - (v / max) * (HEIGHT - BOTTOM - TOP);

function axis(max: number, runs: number): string[] {
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${
      WIDTH / 2
    }" y="22" text-anchor="middle" font-size="15">Throughput, MiB/s (median of ${runs} run(s); higher is better)</text>`,
    `<line x1="${LEFT}" y1="${HEIGHT - BOTTOM}" x2="${WIDTH - 10}" y2="${HEIGHT - BOTTOM}" stroke="black"/>`,
  ];
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    parts.push(`<text x="${LEFT - 6}" y="${yOf(v, max) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
    parts.push(
      `<line x1="${LEFT}" y1="${yOf(v, max)}" x2="${WIDTH - 10}" y2="${yOf(v, max)}" stroke="#ddd"/>`,
    );
  }
  return parts;
}

function group(results: Results, workload: string, title: string, x0: number, width: number, max: number) {
  const present = PROGRAMS.filter((p) => results[workload][p]);
  const barWidth = (width - 40) / present.length;
  const parts: string[] = [];
  present.forEach((p, i) => {
    const v = summarize(results[workload][p]).median;
    const x = x0 + 20 + i * barWidth;
    const middle = x + (barWidth - 6) / 2;
    const y = yOf(v, max);
    parts.push(
      `<rect x="${x}" y="${y}" width="${barWidth - 6}" height="${HEIGHT - BOTTOM - y}" fill="${COLORS[p]}"/>`,
      `<text x="${middle}" y="${y - 4}" text-anchor="middle">${v.toFixed(0)}</text>`,
      `<text x="${middle}" y="${HEIGHT - BOTTOM + 16}" text-anchor="middle">${p}</text>`,
    );
  });
  parts.push(
    `<text x="${x0 + width / 2}" y="${HEIGHT - 18}" text-anchor="middle" font-weight="bold">${title}</text>`,
  );
  return parts;
}

/** The SVG text of the chart. */
export function chart(results: Results, config: BenchConfig): string {
  const workloads = ["w1", "w2"].filter((w) => results[w]);
  const max = Math.max(
    ...workloads.flatMap((w) => Object.values(results[w]).map((samples) => summarize(samples).median)),
  );
  const groupWidth = (WIDTH - LEFT - 20) / workloads.length;
  const title = labels(config);
  const parts = axis(max, config.runs);
  workloads.forEach((w, g) =>
    parts.push(...group(results, w, title[w][0], LEFT + g * groupWidth, groupWidth, max))
  );
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
