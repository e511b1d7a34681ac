"""simulate-station: simulated heat-exchange stations on real Modbus/OPC UA servers.

Plant physics (plant.py), fault injection (faults.py), servers (modbus_server.py,
opcua_server.py), the running simulator (simulator.py), its control API (control.py),
fleet generation (generate.py) and the command line (cli.py).
"""
