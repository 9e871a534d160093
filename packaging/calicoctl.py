from cni_calico.ctl.main import main

main()
