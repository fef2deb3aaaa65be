// Command countnode is one process of the counting cluster test: a Raft
// voter with the counting part, its forward endpoint, and a Counter that
// admits "invokes" arriving on -admit, each calling the test's -worker URL
// while it holds its token. It is built and run by cluster_process_test.go.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/counting"
)

func main() {
	id := flag.String("id", "", "node id")
	dir := flag.String("dir", "", "data dir")
	peersFlag := flag.String("peers", "", "id=raftAddr=forwardAddr,... (every voter)")
	admit := flag.String("admit", "", "listen address for /invoke, /reserve, /leader")
	worker := flag.String("worker", "", "URL each admitted invoke calls")
	ttl := flag.Duration("lease-ttl", 2*time.Second, "counting lease TTL")
	flag.Parse()

	var peers []consensus.Peer
	endpoints := map[string]string{}
	var raftAddr, fwdAddr string
	for _, p := range strings.Split(*peersFlag, ",") {
		f := strings.Split(p, "=")
		if len(f) != 3 {
			log.Fatalf("bad peer %q", p)
		}
		peers = append(peers, consensus.Peer{ID: f[0], Addr: f[1]})
		endpoints[f[0]] = "http://" + f[2]
		if f[0] == *id {
			raftAddr, fwdAddr = f[1], f[2]
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	node, err := consensus.Open(sctx, consensus.Config{Dir: *dir, NodeID: *id, Bind: raftAddr, Peers: peers})
	if err != nil {
		log.Fatal(err)
	}
	store := counting.NewStore(&counting.ClusterProposer{Node: node, Endpoints: endpoints})
	node.Register(counting.PartName, store.State)
	go func() { log.Fatal(http.ListenAndServe(fwdAddr, counting.ForwardHandler(node))) }()
	if err := node.Start(sctx); err != nil {
		log.Fatal(err)
	}
	ctr := counting.NewCounter(counting.Config{Store: store, Holder: *id, LeaseTTL: *ttl, Block: 2})
	client := &http.Client{Timeout: 5 * time.Second}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /invoke", func(w http.ResponseWriter, r *http.Request) {
		tok, err := ctr.Acquire(r.Context(), counting.Request{AccountID: "a", Function: "f", Reserved: counting.FromState})
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		defer ctr.Release(tok)
		resp, err := client.Get(*worker)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /reserve", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if err := store.PutReserved(r.Context(), "a", "f", n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		leader := "no"
		if node.IsLeader() {
			leader = "yes"
		}
		fmt.Fprintf(w, "%d %s", store.Reserved("a", "f"), leader)
	})
	srv := &http.Server{Addr: *admit, Handler: mux}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
	_ = ctr.Close(context.Background())
	_ = node.Close()
}
