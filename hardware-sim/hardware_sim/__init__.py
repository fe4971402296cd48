"""hardware-sim: simulated health peripherals, a virtual BlueZ and serial devices."""
