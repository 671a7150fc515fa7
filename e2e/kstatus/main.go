// vaultsync-kstatus prints kstatus (sigs.k8s.io/cli-utils status.Compute, what Flux's health
// checks use) for live objects, read from the API server the way a client-go client reads them.
//
//	vaultsync-kstatus -kubeconfig FILE [-group vaultsync.io] [-version v1alpha1] TARGET...
//
// A TARGET is RESOURCE/NAME (cluster-scoped) or RESOURCE/NAMESPACE/NAME. The output is one JSON
// object: per target, the status, its message and the standard conditions kstatus derived.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	group := flag.String("group", "vaultsync.io", "API group of the targets")
	version := flag.String("version", "v1alpha1", "API version of the targets")
	flag.Parse()
	if err := run(*kubeconfig, *group, *version, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "vaultsync-kstatus:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, group, version string, targets []string) error {
	if len(targets) == 0 {
		return fmt.Errorf("no targets (RESOURCE/NAME or RESOURCE/NAMESPACE/NAME)")
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]result{}
	for _, target := range targets {
		parts := strings.Split(target, "/")
		gvr := schema.GroupVersionResource{Group: group, Version: version, Resource: parts[0]}
		var resource dynamic.ResourceInterface
		switch len(parts) {
		case 2:
			resource = client.Resource(gvr)
		case 3:
			resource = client.Resource(gvr).Namespace(parts[1])
		default:
			return fmt.Errorf("target %q: want RESOURCE/NAME or RESOURCE/NAMESPACE/NAME", target)
		}
		obj, err := resource.Get(ctx, parts[len(parts)-1], metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		computed, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		out[target] = result{string(computed.Status), computed.Message, computed.Conditions}
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(out)
}
