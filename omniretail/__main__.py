from omniretail.cli import main

main()
