from mmcli.cli.app import main

main()
