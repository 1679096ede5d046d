// Command etcd is the etcd server of drover's real test bed: etcd's own main,
// built from the module version pinned in go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
