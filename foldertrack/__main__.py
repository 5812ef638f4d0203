from foldertrack.cli import main

main()
