// Command etcd is etcd's own entry point (go.etcd.io/etcd/server/v3/etcdmain),
// built by handlers/k8s/k8stest for the test control plane. It lives in a
// module of its own so etcd's dependencies stay out of responder's go.mod and
// apart from Kubernetes'; nothing imports it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
