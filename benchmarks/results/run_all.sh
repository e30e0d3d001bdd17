#!/bin/bash
cd /work/main
P=/work/venv/bin/python
echo "start $(date)"; $P benchmarks/bench_4pl.py > benchmarks/results/bench_4pl.log 2>&1
echo "4pl done $(date)"; $P benchmarks/bench_scale.py > benchmarks/results/bench_scale.log 2>&1
echo "scale done $(date)"; $P benchmarks/bench_param.py > benchmarks/results/bench_param.log 2>&1
echo "param done $(date)"
