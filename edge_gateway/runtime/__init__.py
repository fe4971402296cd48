"""The running gateway: the daemon and its jobs, the DSP scheduler, systemd, status, demo."""
