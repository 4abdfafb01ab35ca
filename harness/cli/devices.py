"""`rackbench devices`: what JAX sees here, and which catalog chip it matches."""
from __future__ import annotations

import json
import os

from harness.device import catalog_ceilings, catalog_chip, default_cpu_devices, environment
from harness.cli.common import add_format
from harness.format import si


def run(args) -> int:
    # the device count `run`, `nightly` and `make bench` use, so the machine id printed here is theirs
    default_cpu_devices(os.environ)
    env = environment()
    dev = env["device"]
    chip = catalog_chip(dev["kind"], dev["platform"])
    if args.format == "json":
        env["ceilings"] = catalog_ceilings(chip) if chip else None
        print(json.dumps(env, indent=1, default=str))
        return 0
    sw, host = env["software"], env["host"]
    print(f"platform: {dev['platform']}  kind: {dev['kind']}  count: {dev['count']} "
          f"(processes: {dev['process_count']})")
    if dev["platform"] == "cpu":
        print(f"device memory: {si(dev['memory_bytes'], 'B')} (host memory)")
    else:
        print(f"device memory: {si(dev.get('hbm_bytes'), 'B')} ({dev.get('hbm_bytes_source')}); "
              f"JAX's allocator pool: {si(dev['memory_bytes'], 'B')}")
    print(f"compute capability: {dev['compute_capability'] or '-'}")
    print(f"host: {host['hostname']}  cpu: {host['cpu']} x{host['cpu_count']}  memory: {si(host['memory_bytes'], 'B')}")
    print(f"python {sw['python']}  jax {sw['jax']}  jaxlib {sw['jaxlib']}  optax {sw.get('optax')}")
    for k in ("cuda_runtime", "cuda_driver", "cudnn", "nvidia_driver"):
        if k in sw:
            print(f"{k}: {sw[k]}")
    if chip:
        peaks = ", ".join(f"{k} {si(v, 'FLOP/s')}" for k, v in chip.peak_flops_per_s.items())
        print(f"catalog chip: {chip.name} ({chip.description}): {peaks}; HBM {si(chip.hbm_bw_bytes_per_s, 'B/s')}")
    else:
        print("catalog chip: none; " + (dev.get("catalog_note") or "ceilings are measured during `rackbench run` "
                                         "(best matmul, best stream bandwidth)"))
    print(f"results directory name: {env['machine_id']}")
    return 0


def register(p) -> None:
    add_format(p)
    p.set_defaults(func=run)
