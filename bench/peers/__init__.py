"""The balloon policies the replay compares: hvdesk's (an adapter) and two peers reimplemented from
their published rules (MOM, Proxmox). Each implements `bench.balloon_sim.BalloonPolicy`."""
