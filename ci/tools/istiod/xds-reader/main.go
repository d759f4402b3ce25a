// xds-reader connects to istiod as an Envoy proxy would (a node of type router or sidecar, with the
// labels its workload carries) over Aggregated Discovery (ADS, state of the world), and prints as JSON
// what istiod sends it: listeners, routes, clusters and endpoints, in Envoy's own field names (those
// of an Envoy config dump). Once by default; with --watch, a line for every change until killed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	// Every Envoy extension istiod may put in a typed_config, and the TypedStructs it wraps some in,
	// so that they print as JSON.
	_ "github.com/cncf/xds/go/udpa/type/v1"
	_ "github.com/cncf/xds/go/xds/type/v3"
	_ "istio.io/istio/pkg/config/xds"
)

const (
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

var kinds = map[string]string{listenerType: "listeners", routeType: "routes", clusterType: "clusters", endpointType: "endpoints"}

type options struct {
	address, nodeType, ip, name, namespace, istioVersion string
	labels                                               map[string]string
	watch                                                bool
	quiet, timeout                                       time.Duration
}

func main() {
	var o options
	var labels string
	flag.StringVar(&o.address, "xds", "127.0.0.1:15010", "istiod's plaintext xDS address")
	flag.StringVar(&o.nodeType, "type", "router", "proxy type: router (a gateway) or sidecar")
	flag.StringVar(&o.ip, "ip", "198.18.255.200", "the proxy's address")
	flag.StringVar(&o.name, "name", "istio-ingressgateway", "the proxy's pod name")
	flag.StringVar(&o.namespace, "namespace", "istio-system", "the proxy's namespace")
	flag.StringVar(&labels, "labels", "istio=ingressgateway", "the proxy workload's labels, k=v,k=v (Gateways select on them)")
	flag.StringVar(&o.istioVersion, "istio-version", "", "ISTIO_VERSION the proxy reports (default: istiod's own)")
	flag.BoolVar(&o.watch, "watch", false, "keep the stream: print a line for every change")
	flag.DurationVar(&o.quiet, "quiet", 300*time.Millisecond, "a snapshot is printed when istiod has sent nothing for this long")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "without --watch: give up after this long")
	flag.Parse()
	o.labels = map[string]string{}
	for _, kv := range strings.Split(labels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			o.labels[k] = v
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "xds-reader: %v\n", err)
		os.Exit(1)
	}
}

func node(o options) (*core.Node, error) {
	labels := map[string]any{}
	for k, v := range o.labels {
		labels[k] = v
	}
	meta := map[string]any{
		"NAMESPACE":     o.namespace,
		"NAME":          o.name,
		"LABELS":        labels,
		"INSTANCE_IPS":  o.ip,
		"CLUSTER_ID":    "Kubernetes",
		"WORKLOAD_NAME": o.name,
		"ISTIO_VERSION": o.istioVersion,
	}
	if o.istioVersion == "" {
		delete(meta, "ISTIO_VERSION")
	}
	s, err := structpb.NewStruct(meta)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", o.nodeType, o.ip, o.name, o.namespace, o.namespace)
	return &core.Node{Id: id, Metadata: s}, nil
}

// state is what istiod has sent so far, by type and resource name, and when each type last arrived.
type state struct {
	mu         sync.Mutex
	resources  map[string]map[string]*anypb.Any
	receivedAt map[string]int64
	changed    chan struct{}
}

func run(o options) error {
	n, err := node(o)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.address, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return fmt.Errorf("connecting to istiod at %s: %w", o.address, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !o.watch {
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("opening the ADS stream to istiod at %s: %w", o.address, err)
	}
	st := &state{resources: map[string]map[string]*anypb.Any{}, receivedAt: map[string]int64{}, changed: make(chan struct{}, 1)}
	// Subscriptions as Envoy makes them: clusters and listeners by wildcard, then the endpoints of the
	// EDS clusters and the routes the listeners name.
	subscribed := map[string][]string{}
	var sendMu sync.Mutex
	send := func(typeURL, version, nonce string, names []string) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce, ResourceNames: names})
	}
	for _, t := range []string{clusterType, listenerType} {
		if err := send(t, "", "", nil); err != nil {
			return fmt.Errorf("subscribing to %s: %w", kinds[t], err)
		}
	}
	errs := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				errs <- fmt.Errorf("reading from istiod at %s: %w", o.address, err)
				return
			}
			st.mu.Lock()
			// Clusters and listeners (wildcard) come whole in each response; routes and endpoints
			// (subscribed by name) only those that changed: the others stay as they were, as in Envoy.
			byName := map[string]*anypb.Any{}
			if resp.TypeUrl == routeType || resp.TypeUrl == endpointType {
				for name, r := range st.resources[resp.TypeUrl] {
					byName[name] = r
				}
			}
			for _, r := range resp.Resources {
				name, err := resourceName(resp.TypeUrl, r)
				if err != nil {
					st.mu.Unlock()
					errs <- err
					return
				}
				byName[name] = r
			}
			st.resources[resp.TypeUrl] = byName
			st.receivedAt[resp.TypeUrl] = time.Now().UnixMilli()
			st.mu.Unlock()
			// ACK, and follow what the listeners and clusters name.
			if err := send(resp.TypeUrl, resp.VersionInfo, resp.Nonce, subscribed[resp.TypeUrl]); err != nil {
				errs <- err
				return
			}
			for dependent, names := range dependencies(st, resp.TypeUrl) {
				if !equal(names, subscribed[dependent]) {
					subscribed[dependent] = names
					if err := send(dependent, "", "", names); err != nil {
						errs <- err
						return
					}
				}
			}
			select {
			case st.changed <- struct{}{}:
			default:
			}
		}
	}()

	out := json.NewEncoder(os.Stdout)
	for {
		// A snapshot once istiod has gone quiet after the last change.
		select {
		case err := <-errs:
			return err
		case <-st.changed:
		}
		for quiet := false; !quiet; {
			select {
			case err := <-errs:
				return err
			case <-st.changed:
			case <-time.After(o.quiet):
				quiet = true
			}
		}
		snap, complete, err := snapshot(st)
		if err != nil {
			return err
		}
		if !complete {
			continue
		}
		if !o.watch {
			out.SetIndent("", "  ")
			return out.Encode(snap)
		}
		if err := out.Encode(snap); err != nil {
			return err
		}
	}
}

// dependencies gives, after a response of one type, the names of the resources of another type it names.
func dependencies(st *state, typeURL string) map[string][]string {
	st.mu.Lock()
	defer st.mu.Unlock()
	deps := map[string][]string{}
	switch typeURL {
	case listenerType:
		names := map[string]bool{}
		for _, r := range st.resources[listenerType] {
			l := &listener.Listener{}
			if r.UnmarshalTo(l) != nil {
				continue
			}
			for _, fc := range l.FilterChains {
				for _, f := range fc.Filters {
					m := &hcm.HttpConnectionManager{}
					if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(m) != nil {
						continue
					}
					if rds := m.GetRds(); rds != nil {
						names[rds.RouteConfigName] = true
					}
				}
			}
		}
		deps[routeType] = sorted(names)
	case clusterType:
		names := map[string]bool{}
		for name, r := range st.resources[clusterType] {
			c := &cluster.Cluster{}
			if r.UnmarshalTo(c) == nil && c.GetType() == cluster.Cluster_EDS {
				if c.EdsClusterConfig != nil && c.EdsClusterConfig.ServiceName != "" {
					name = c.EdsClusterConfig.ServiceName
				}
				names[name] = true
			}
		}
		deps[endpointType] = sorted(names)
	}
	return deps
}

// snapshot is what was received, as JSON objects by kind; complete when clusters and listeners came
// and every route the listeners name did too.
func snapshot(st *state) (map[string]any, bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.receivedAt[clusterType] == 0 || st.receivedAt[listenerType] == 0 {
		return nil, false, nil
	}
	snap := map[string]any{}
	received := map[string]int64{}
	for typeURL, kind := range kinds {
		received[kind] = st.receivedAt[typeURL]
		names := make([]string, 0, len(st.resources[typeURL]))
		for name := range st.resources[typeURL] {
			names = append(names, name)
		}
		sort.Strings(names)
		list := []json.RawMessage{}
		for _, name := range names {
			msg, err := st.resources[typeURL][name].UnmarshalNew()
			if err != nil {
				return nil, false, fmt.Errorf("decoding %s %s: %w", kind, name, err)
			}
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
			if err != nil {
				return nil, false, fmt.Errorf("printing %s %s: %w", kind, name, err)
			}
			list = append(list, b)
		}
		snap[kind] = list
	}
	snap["receivedAt"] = received
	return snap, true, nil
}

func resourceName(typeURL string, r *anypb.Any) (string, error) {
	var msg interface{ GetName() string }
	switch typeURL {
	case listenerType:
		msg = &listener.Listener{}
	case routeType:
		msg = &route.RouteConfiguration{}
	case clusterType:
		msg = &cluster.Cluster{}
	case endpointType:
		cla := &endpoint.ClusterLoadAssignment{}
		if err := r.UnmarshalTo(cla); err != nil {
			return "", fmt.Errorf("decoding an endpoint assignment: %w", err)
		}
		return cla.ClusterName, nil
	default:
		return "", fmt.Errorf("istiod sent a resource of an unexpected type %s", typeURL)
	}
	if err := r.UnmarshalTo(msg.(proto.Message)); err != nil {
		return "", fmt.Errorf("decoding a %s: %w", kinds[typeURL], err)
	}
	return msg.GetName(), nil
}

func sorted(set map[string]bool) []string {
	list := make([]string, 0, len(set))
	for k := range set {
		list = append(list, k)
	}
	sort.Strings(list)
	return list
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
