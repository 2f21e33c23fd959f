"""The per-rank cost of a step's proxy side, replicated against sharded by
class (docs/sharding.md), for P = 8..512 ranks: memory, bytes on the wire
and the time of what differs between the two (the similarity GEMM and the
selection cost the same rows x proxies per rank in both modes and are
counted once, as `compute`).

  /usr/bin/python3 bench/shard_model.py [--classes 1e6] [--N 2] [--D 128] [--rows 32]
      [--gbit 10] [--latency-us 5] [--gflops 50] [--mem-gbs 10]

Weak scaling: every rank trains `rows` samples, G = rows * P. Ring
collectives: a rank sends and receives (P-1)/P of an allgather's or a
reduce-scatter's volume, twice that for an allreduce, and pays about
2 log2(P) latencies per collective (a tree's depth, both ways).
Replicated: the proxies' gradient is allreduced (M D floats) and every
rank runs Adam over all M D values (28 bytes of memory traffic each:
read p, g, m, v, write p, m, v). Sharded: allgather G x D and G labels,
the selection's allreduces (256 value bins per row, the key range, then
the digit rounds: `--digit-ints` counts per row, 166 as measured by
bench/bench_shard.sh at C = 10^6), an allreduce of 2G doubles, the
reduce-scatter of G x D; Adam over M D / P values; 7 collectives' latency. Memory: params,
gradient and both moments (16 bytes per value; replicated with the
sharded optimizer: 8 + 8/P), the similarity block (rows x M floats
replicated, G x M/P sharded).
"""
import argparse
import math


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=float, default=1e6)
    ap.add_argument("--N", type=int, default=2)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--gbit", type=float, default=10.0)
    ap.add_argument("--latency-us", type=float, default=5.0)
    ap.add_argument("--gflops", type=float, default=50.0, help="sgemm rate per rank")
    ap.add_argument("--mem-gbs", type=float, default=10.0, help="memory bandwidth per rank, GB/s")
    ap.add_argument("--digit-ints", type=float, default=166.0, help="digit-round counts per row (measured)")
    a = ap.parse_args()
    C, N, D, rows = int(a.classes), a.N, a.D, a.rows
    M = C * N
    bw = a.gbit * 1e9 / 8
    lat = a.latency_us * 1e-6
    compute = 2.0 * rows * M * D / (a.gflops * 1e9)
    print(f"C = {C:,}, N = {N}, D = {D}, {rows} rows per rank, {a.gbit:g} Gbit/s, {a.latency_us:g} us, "
          f"compute (the same in both modes) {compute:.3f} s per step\n")
    print("| P | replicated: memory | wire | comm + Adam | sharded: memory | wire | comm + Adam | bytes ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for P in (8, 16, 32, 64, 128, 256, 512):
        G = rows * P
        f = (P - 1) / P
        hops = 2 * math.log2(P) * lat
        r_mem = (8 + 8 / P) * M * D + rows * M * 4
        r_wire = 2 * f * M * D * 4
        r_time = r_wire / bw + hops + 28 * M * D / (a.mem_gbs * 1e9)
        Mp = M / P
        s_mem = 16 * Mp * D + G * Mp * 4
        s_vol = (G * D * 4 + G * 4) + 2 * G * (256 + 2 + a.digit_ints) * 4 + 2 * 2 * G * 8 + G * D * 4
        s_wire = f * s_vol
        s_time = s_wire / bw + 7 * hops + 28 * Mp * D / (a.mem_gbs * 1e9)
        gib = 1024 ** 3
        print(f"| {P} | {r_mem / gib:.2f} GiB | {r_wire / 2**20:,.0f} MiB | {r_time:.3f} s | {s_mem / gib:.3f} GiB "
              f"| {s_wire / 2**20:.1f} MiB | {s_time * 1e3:.1f} ms | {r_wire / s_wire:,.0f}x |")


if __name__ == "__main__":
    main()
