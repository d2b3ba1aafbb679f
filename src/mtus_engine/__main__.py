from .interfaces.front import main

main()
