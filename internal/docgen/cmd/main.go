// Command cmd writes docs/components/*.md, the reference page of every pgflo
// component, from the registered config specs. Run it from the repository
// root after changing a component's spec:
//
//	go run ./internal/docgen/cmd
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/docgen"
	_ "github.com/pgflo/pgflo/internal/docgen/components"
)

func main() {
	dir := flag.String("dir", "docs/components", "directory to write the component pages into")
	flag.Parse()
	if err := docgen.Generate(service.GlobalEnvironment(), *dir); err != nil {
		fmt.Fprintf(os.Stderr, "docgen: %v\n", err)
		os.Exit(1)
	}
}
