from .cli import main

main(prog_name="edge-gateway")
