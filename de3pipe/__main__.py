from de3pipe.cli import main

main()
