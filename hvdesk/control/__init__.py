"""The allocation controller's policy: samples in, decisions with reasons out.

Pure: no I/O, no clock (time comes in with the samples), no Qt or asyncio, nothing above core.
- inputs.py     what the policy reads (host, VMs, settings), in bytes and seconds
- decisions.py  what it decides (balloon target, vCPU placement, CPU weight), JSON-able
- waterfill.py  share-weighted water-filling between floors and caps (the arithmetic alone)
- memory.py     the balloon policy: budget, floors, rates, pressure override, hold-off
- cpu.py        vCPU placement (off / balanced / dedicated) with hysteresis, and CPU weights
- policy.py     one cycle of both: decide(host, vms, state) -> (decisions, state)
The actuators (QMP balloon, affinity, cgroups) and the loop live elsewhere.
"""
