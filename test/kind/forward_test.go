//go:build kind

package kind

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// frontDoor stands in for the load balancer in front of a room: a listener
// on 127.0.0.1 whose every new connection goes, through the API server's
// port-forward, to one of the room's Ready chat pods: the preferred one while
// it is Ready, else any. A person pinned to a pod that is deleted comes back
// through the same address to a pod that is left, as a browser would through
// a Service. Only loopback is used: the pods' own addresses are not.
type frontDoor struct {
	t      *testing.T
	cfg    *rest.Config
	kube   kubernetes.Interface
	c      client.Client
	ns     string
	labels map[string]string
	ln     net.Listener

	mu        sync.Mutex
	preferPod string
	forwards  map[string]*podForward
	conns     map[net.Conn]bool
	wg        sync.WaitGroup
}

func openFrontDoor(t *testing.T, cfg *rest.Config, c client.Client, ns string, labels map[string]string, prefer string) *frontDoor {
	t.Helper()
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &frontDoor{t: t, cfg: cfg, kube: kube, c: c, ns: ns, labels: labels, ln: ln, preferPod: prefer,
		forwards: map[string]*podForward{}, conns: map[net.Conn]bool{}}
	d.wg.Go(d.accept)
	t.Cleanup(d.close)
	return d
}

func (d *frontDoor) URL() string { return "http://" + d.ln.Addr().String() }

// prefer sends new connections to pod while it is Ready.
func (d *frontDoor) prefer(pod string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.preferPod = pod
}

func (d *frontDoor) preferred() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.preferPod
}

func (d *frontDoor) accept() {
	for {
		conn, err := d.ln.Accept()
		if err != nil {
			return // closed
		}
		d.wg.Go(func() {
			if err := d.serve(conn); err != nil {
				d.t.Logf("front door %s: %v", d.ln.Addr(), err)
			}
		})
	}
}

func (d *frontDoor) serve(conn net.Conn) error {
	defer conn.Close()
	ctx := context.Background()
	ready, seen, err := readyPods(ctx, d.c, d.ns, d.labels)
	if err != nil {
		return err
	}
	if len(ready) == 0 {
		return fmt.Errorf("no Ready chat pod to forward to (%s)", seen)
	}
	pod, prefer := ready[0].Name, d.preferred()
	for _, p := range ready {
		if p.Name == prefer {
			pod = p.Name
		}
	}
	addr, err := d.forward(pod)
	if err != nil {
		return err
	}
	up, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial the forward to %s: %w", pod, err)
	}
	defer up.Close()
	if !d.track(conn, up) {
		return nil
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
	<-done // either side closing ends both
	d.untrack(conn, up)
	return nil
}

func (d *frontDoor) track(cs ...net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns == nil {
		return false
	}
	for _, c := range cs {
		d.conns[c] = true
	}
	return true
}

func (d *frontDoor) untrack(cs ...net.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range cs {
		delete(d.conns, c)
	}
}

// forward returns the local address of a port-forward to pod's chat port,
// starting one when there is none or the last one ended.
func (d *frontDoor) forward(pod string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f := d.forwards[pod]; f != nil && f.alive() {
		return f.addr, nil
	}
	f, err := startForward(d.cfg, d.kube, d.ns, pod, 8080)
	if err != nil {
		return "", err
	}
	d.forwards[pod] = f
	return f.addr, nil
}

func (d *frontDoor) close() {
	d.ln.Close()
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.conns = nil
	for _, f := range d.forwards {
		f.stop()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// podForward is one API-server port-forward to one pod.
type podForward struct {
	addr     string
	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{}
}

func startForward(cfg *rest.Config, kube kubernetes.Interface, ns, pod string, port int) (*podForward, error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	url := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	f := &podForward{stopCh: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, f.stopCh, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		defer close(f.done)
		errc <- pf.ForwardPorts()
	}()
	select {
	case <-ready:
	case err := <-errc:
		return nil, fmt.Errorf("port-forward to %s: %w", pod, err)
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		f.stop()
		return nil, fmt.Errorf("port-forward to %s: ports %v: %v", pod, ports, err)
	}
	f.addr = fmt.Sprintf("127.0.0.1:%d", ports[0].Local)
	return f, nil
}

func (f *podForward) alive() bool {
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

func (f *podForward) stop() {
	f.stopOnce.Do(func() { close(f.stopCh) })
	<-f.done
}
