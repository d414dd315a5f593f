"""GPU passthrough: the host checks (PASSTHROUGH ids) doctor reports and apply gates on."""
