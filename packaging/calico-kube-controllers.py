from cni_calico.kube.main import main

main()
