from edge_gateway.cli import main

main(prog_name="edge-gateway")
