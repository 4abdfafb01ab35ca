"""`rackbench devices`: what JAX sees here, and which catalog chip it matches."""
from __future__ import annotations

import os

from harness.device import catalog_ceilings, catalog_chip, default_cpu_devices, environment
from harness.cli.common import add_format, emit
from harness.format import si


def _devices(dev: dict, chip) -> list[dict]:
    """One record per device JAX sees (all of one kind: the memory figures are the first
    device's, as `rackbench run` records them)."""
    import jax

    return [{"id": d.id, "process_index": d.process_index, "platform": d.platform,
             "kind": d.device_kind, "memory_bytes": dev["memory_bytes"],
             "memory_bytes_source": dev.get("memory_bytes_source"), "hbm_bytes": dev.get("hbm_bytes"),
             "catalog_chip": chip.name if chip else None}
            for d in jax.devices()]


def run(args) -> int:
    # the device count `run`, `nightly` and `make bench` use, so the machine id printed here is theirs
    default_cpu_devices(os.environ)
    env = environment()
    dev = env["device"]
    chip = catalog_chip(dev["kind"], dev["platform"])
    if args.format != "table":
        env["ceilings"] = catalog_ceilings(chip) if chip else None
        env["devices"] = _devices(dev, chip)
        emit(args.format, json_doc=lambda: env, indent=1, json_default=str,
             records=lambda: env["devices"])
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
    add_format(p, "csv")
    p.set_defaults(func=run)
