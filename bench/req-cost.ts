/**
 * The router's cost per small request (issue 10, "small requests"): GET /text/sample through the router and through
 * Caddy 2.6 in front of the same text service, driven by the quic-go client (5,000 GETs on one connection, 100 and
 * 1,000 in flight, as in bench/edge.ts), by gtlsclient (-n 5,000 on one connection) and, with --clients qsrload100,
 * qsrload1000, by this build's `qsr load` (one connection, 100 / 1,000 in flight; its own CPU per request and latency
 * median from its JSON report are shown too). For every client run: the
 * requests per second (the client's wall clock) and the server's CPU time from /proc (all threads, user + system)
 * over the run, per request. Runs alternate router/Caddy (the order flips every run); figures are medians.
 *
 *   node dist/bench/req-cost.js [--runs 5] [--clients quicgo100,quicgo1000,gtls,qsrload100,qsrload1000] [--n 5000] [--profile DIR]
 *                               [--no-caddy] [--access-log FILE] [--base OTHER/dist/src/cli/qsr.js]
 *
 * --profile DIR runs the router with --cpu-prof (written to DIR when it exits after the runs) and prints the top
 * functions by self time and a breakdown by area (bench/profile-areas.ts). --access-log FILE turns the router's
 * access log on (off by default, as in the edge suite). --base runs a second router from another build (e.g. the
 * commit before a change) beside this one, in the same alternation: an A/B in one session. Loopback only; every child
 * is bounded and stopped by PID.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { CERTS, HOST, QSR_JS, fmt, fmtInt, freePort, gtlsCheck, median, spawnBounded, stopServer, summarizeProfiles, table, waitForOutput, type Child, type SuiteOptions } from './common.js';
import { gtlsGets, routerConfig, startCaddy, startRouter, startService } from './router.js';
import { probeSnap, procCpuSeconds } from './edge.js';
import { buildQuicGo, runQuicGoClient } from '../tools/peers/quicgo.js';
import { profileAreas } from './profile-areas.js';

type ClientKind = 'quicgo100' | 'quicgo1000' | 'gtls' | 'qsrload100' | 'qsrload1000';
const CLIENTS: readonly ClientKind[] = ['quicgo100', 'quicgo1000', 'gtls', 'qsrload100', 'qsrload1000'];
const DEFAULT_CLIENTS: readonly ClientKind[] = ['quicgo100', 'quicgo1000', 'gtls'];
type Target = 'router' | 'base' | 'caddy';
const PROBE_JS = fileURLToPath(new URL('./probe.js', import.meta.url));

interface Sample {
  rps: number;
  cpuUsPerReq: number;
  /** qsr load only: the generator's own CPU per request and its latency median (ms). */
  clientUsPerReq: number | null;
  p50Ms: number | null;
  /** UDP datagrams the server received and sent per request (routers only: bench/probe.ts). */
  inPerReq: number | null;
  outPerReq: number | null;
}

function args(): { runs: number; clients: ClientKind[]; n: number; profile: string | null; caddy: boolean; accessLog: string | null; base: string | null } {
  const a = process.argv.slice(2);
  const out = { runs: 5, clients: [...DEFAULT_CLIENTS], n: 5000, profile: null as string | null, caddy: true, accessLog: null as string | null, base: null as string | null };
  for (let i = 0; i < a.length; i++) {
    const f = a[i];
    const v = (): string => {
      const x = a[++i];
      if (x === undefined) throw new Error(`${f} needs a value`);
      return x;
    };
    if (f === '--runs') out.runs = Number(v());
    else if (f === '--n') out.n = Number(v());
    else if (f === '--clients') {
      const list = v().split(',');
      for (const c of list) if (!CLIENTS.includes(c as ClientKind)) throw new Error(`--clients: unknown client "${c}" (${CLIENTS.join(', ')})`);
      out.clients = list as ClientKind[];
    } else if (f === '--profile') out.profile = v();
    else if (f === '--no-caddy') out.caddy = false;
    else if (f === '--access-log') out.accessLog = v();
    else if (f === '--base') out.base = v();
    else throw new Error(`unknown flag ${f}`);
  }
  if (!Number.isInteger(out.runs) || out.runs < 1) throw new Error('--runs: expected a positive integer');
  if (!Number.isInteger(out.n) || out.n < 1) throw new Error('--n: expected a positive integer');
  return out;
}

interface ClientRun {
  rps: number;
  clientUsPerReq: number | null;
  p50Ms: number | null;
}

/** `qsr load` of this build (the same generator for every target), one connection, S in flight, its JSON report. */
async function qsrLoad(o: SuiteOptions, streams: number, port: number, n: number, name: string): Promise<ClientRun | string> {
  const args = [QSR_JS, 'load', `https://${HOST}:${port}/text/sample`, '-c', '1', '-s', String(streams), '-n', String(n), '--ca', `${CERTS}ca.pem`, '--server-name', 'localhost', '--json'];
  const c = spawnBounded({ name, cmd: process.execPath, args, workDir: o.work, timeoutMs: 120_000 });
  const e = await c.exited;
  type Report = { requestsPerSec?: number; requests?: { ok?: number }; latencyMs?: { p50?: number }; generator?: { cpuSeconds?: number } };
  let rep: Report | null = null;
  try {
    rep = JSON.parse(c.stdout()) as Report;
  } catch {
    rep = null;
  }
  if (rep === null || typeof rep.requestsPerSec !== 'number') return `qsr load: no JSON report (exit ${e.code ?? e.signal}): ${c.output().slice(-300)}`;
  if (rep.requests?.ok !== n) return `qsr load: ${rep.requests?.ok ?? 0}/${n} ok`;
  return { rps: rep.requestsPerSec, clientUsPerReq: typeof rep.generator?.cpuSeconds === 'number' ? (rep.generator.cpuSeconds * 1e6) / n : null, p50Ms: rep.latencyMs?.p50 ?? null };
}

async function runClient(o: SuiteOptions, kind: ClientKind, port: number, n: number, name: string): Promise<ClientRun | string> {
  if (kind === 'qsrload100' || kind === 'qsrload1000') return qsrLoad(o, kind === 'qsrload100' ? 100 : 1000, port, n, name);
  const plain = await runPeerClient(o, kind, port, n, name);
  return typeof plain === 'string' ? plain : { rps: plain, clientUsPerReq: null, p50Ms: null };
}

async function runPeerClient(o: SuiteOptions, kind: 'quicgo100' | 'quicgo1000' | 'gtls', port: number, n: number, name: string): Promise<number | string> {
  if (kind === 'gtls') return gtlsGets(o, name, port, n);
  const r = await runQuicGoClient({
    urls: [`https://${HOST}:${port}/text/sample`],
    requests: n,
    concurrency: kind === 'quicgo100' ? 100 : 1000,
    caFile: `${CERTS}ca.pem`,
    serverName: 'localhost',
    workDir: o.work,
    name,
    timeoutMs: 120_000,
  });
  if (!r.ok || r.report === undefined) return r.error ?? 'failed';
  return r.report.totals.requests / (r.report.totals.wallMs / 1000);
}

async function main(): Promise<void> {
  const opt = args();
  const work = mkdtempSync(join(tmpdir(), 'qsr-req-cost-'));
  const o: SuiteOptions = { runs: opt.runs, profileDir: opt.profile, work };
  const kids: Child[] = [];
  try {
    const b = await buildQuicGo();
    if ('error' in b && opt.clients.some((c) => c !== 'gtls')) throw new Error(b.error);
    const text = await startService(o, 'text');
    if (typeof text === 'string') throw new Error(text);
    kids.push(text.child);
    const routerPort = await freePort();
    const cfg = routerConfig(o, routerPort, text.port, text.port, [], 'router.yaml');
    if (opt.accessLog !== null) writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('accessLog: false', `accessLog: "${opt.accessLog}"`));
    const probeFile = (name: string): string => join(work, `probe-${name}.jsonl`);
    const router = await startRouter(o, cfg, 'router', opt.profile, ['--import', `file://${PROBE_JS}`], { QSR_BENCH_PROBE: probeFile('router') });
    if (typeof router === 'string') throw new Error(router);
    kids.push(router);
    let base: Child | null = null;
    const basePort = await freePort();
    if (opt.base !== null) {
      const bcfg = routerConfig(o, basePort, text.port, text.port, [], 'router-base.yaml');
      if (opt.accessLog !== null) writeFileSync(bcfg, readFileSync(bcfg, 'utf8').replace('accessLog: false', `accessLog: "${opt.accessLog}.base"`));
      base = spawnBounded({ name: 'router-base', cmd: process.execPath, args: ['--import', `file://${PROBE_JS}`, opt.base, 'proxy', '--config', bcfg], workDir: work, timeoutMs: 60 * 60_000, env: { QSR_BENCH_PROBE: probeFile('base') } });
      kids.push(base);
      if (!(await waitForOutput(base, (t) => t.includes('quic-stream-router is up'), 15_000))) throw new Error(`base router did not start: ${base.output().slice(-500)}`);
    }
    let caddy: Child | null = null;
    const caddyPort = await freePort();
    if (opt.caddy) {
      const c = await startCaddy(o, caddyPort, text.port, text.port);
      if (typeof c === 'string') throw new Error(c);
      caddy = c;
      kids.push(c);
    }
    const targets: { t: Target; child: Child; port: number }[] = [{ t: 'router', child: router, port: routerPort }];
    if (base) targets.push({ t: 'base', child: base, port: basePort });
    if (caddy) targets.push({ t: 'caddy', child: caddy, port: caddyPort });
    for (const t of targets) {
      const bad = opt.clients.includes('gtls') ? await gtlsCheck(work, t.port, `https://${HOST}:${t.port}/text/sample`) : null;
      if (bad) throw new Error(`${t.t}: gtlsclient check failed: ${bad}`);
      // Warm-up: JIT, upstream keep-alive connections.
      await runClient(o, 'quicgo100', t.port, 2000, `warm-${t.t}`);
    }
    const samples = new Map<string, Sample[]>();
    const failures: string[] = [];
    for (let run = 1; run <= opt.runs; run++) {
      const order = run % 2 === 1 ? targets : [...targets].reverse();
      const line: string[] = [];
      for (const c of opt.clients) {
        for (const t of order) {
          const probed = t.t !== 'caddy';
          const p0 = probed ? await probeSnap(t.child, probeFile(t.t)) : null;
          const cpu0 = procCpuSeconds(t.child.pid);
          const r = await runClient(o, c, t.port, opt.n, `${c}-${t.t}-${run}`);
          const cpu1 = procCpuSeconds(t.child.pid);
          const p1 = probed ? await probeSnap(t.child, probeFile(t.t)) : null;
          if (typeof r === 'string' || cpu0 === null || cpu1 === null) {
            failures.push(`run ${run} ${c} ${t.t}: ${typeof r === 'string' ? r : 'server gone'}`);
            continue;
          }
          const s: Sample = {
            rps: r.rps,
            clientUsPerReq: r.clientUsPerReq,
            p50Ms: r.p50Ms,
            cpuUsPerReq: ((cpu1 - cpu0) * 1e6) / opt.n,
            inPerReq: p0 && p1 ? (p1.datagramsIn - p0.datagramsIn) / opt.n : null,
            outPerReq: p0 && p1 ? (p1.datagramsOut - p0.datagramsOut) / opt.n : null,
          };
          const k = `${c}|${t.t}`;
          samples.set(k, [...(samples.get(k) ?? []), s]);
          line.push(`${c} ${t.t} ${fmtInt(s.rps)} req/s ${fmt(s.cpuUsPerReq, 0)} us${s.clientUsPerReq !== null ? ` (client ${fmt(s.clientUsPerReq, 0)} us, p50 ${fmt(s.p50Ms, 1)} ms)` : ''}${s.inPerReq !== null ? ` ${fmt(s.inPerReq, 2)}/${fmt(s.outPerReq, 2)} dgrams in/out` : ''}`);
        }
      }
      console.log(`run ${run}: ${line.join('; ')}`);
    }
    const rows: string[][] = [['client', 'router req/s', 'Caddy req/s', 'ratio', 'router CPU us/req', 'Caddy CPU us/req', ...(base ? ['base req/s', 'base ratio', 'base CPU us/req'] : []), 'client CPU us/req router/Caddy', 'p50 ms router/Caddy']];
    for (const c of opt.clients) {
      const med = (t: Target, f: (s: Sample) => number): number | null => median((samples.get(`${c}|${t}`) ?? []).map(f));
      const rr = med('router', (s) => s.rps);
      const kr = med('caddy', (s) => s.rps);
      const br = med('base', (s) => s.rps);
      const ratio = (a: number | null): string => (a !== null && kr !== null ? fmt(a / kr, 2) : 'n/a');
      const row = [c, fmtInt(rr), fmtInt(kr), ratio(rr), fmt(med('router', (s) => s.cpuUsPerReq), 0), fmt(med('caddy', (s) => s.cpuUsPerReq), 0)];
      if (base) row.push(fmtInt(br), ratio(br), fmt(med('base', (s) => s.cpuUsPerReq), 0));
      const both = (f: (s: Sample) => number | null, d: number): string => `${fmt(med('router', (s) => f(s) ?? NaN), d)}/${fmt(med('caddy', (s) => f(s) ?? NaN), d)}${base ? `/${fmt(med('base', (s) => f(s) ?? NaN), d)}` : ''}`;
      row.push(both((s) => s.clientUsPerReq, 0), both((s) => s.p50Ms, 1));
      rows.push(row);
    }
    console.log(`\nmedians of ${opt.runs} runs, ${fmtInt(opt.n)} GET /text/sample on one connection each (quicgo100/1000: quic-go client, 100/1,000 in flight; gtls: gtlsclient -n)`);
    console.log(table(rows));
    for (const f of failures) console.log(`FAILED ${f}`);
    if (opt.profile !== null) {
      await stopServer(router, 'SIGINT', 15_000);
      for (const l of summarizeProfiles(opt.profile, 40)) console.log(l);
      for (const l of profileAreas(opt.profile)) console.log(l);
    }
  } finally {
    for (const k of kids) await stopServer(k, 'SIGINT', 5000);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`req-cost: ${(e as Error).message}`);
  process.exit(1);
});
