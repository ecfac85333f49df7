from pyhv.cli.app import main

main()
