"""Benchmark harness (installed as kd_edge.benchmarks): latency and memory here, over ssh, on phones.

- ``harness.bench(artifacts, threads=, sizes=, runs=, warmup=, device=)`` -> bench document (schema v1)
- ``runner``: the standalone per-measurement script (numpy + the runtime only; copied to boards)
- ``schema``: ``bench_schema.json``, ``validate(doc)``, ``read_results(path)``
- ``report``: ``markdown(doc)``, ``plots(doc, dir)``, ``compare(a, b)``, ``headline_ratios(doc)``
- ``reference``: the P100 figures of the seed report; ``peak``: the roofline peak (``kd-edge bench --peak``)
- ``ssh.SSHDevice``: Jetson / Linux boards; phones: ``kd_edge.android_harness.adb.bench_adb``
- ``student_bench``: the evidence run (convert a student to every target, bench threads 1 and 2)
"""
