from cni_calico.node.main import main

main()
