// Package bench is the machinery behind `make bench` and `make soak`: it starts
// the processes under test (the facade, the sandbox, a pass-through proxy), drives
// load against them with distinct ids, and turns what it measured into tables and
// verdicts. The commands live in bench/cmd; the pass-through proxy in
// bench/passproxy.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a child process under test.
type Process struct {
	Name   string
	cmd    *exec.Cmd
	lines  chan string   // stdout, line by line
	stderr *os.File      // where the process writes its stderr: a file, as when a user redirects it
	done   chan struct{} // closed when the process has exited
	err    error         // of Wait, once done is closed
}

// stderrTail is how much of a process's stderr Stderr returns.
const stderrTail = 8 << 10

// StartProcess starts path with args and env (added to this process's
// environment, minus the facade's own variables, so that a developer's shell
// cannot change what is measured). Its stderr goes to a temporary file,
// removed once the process has exited: a process whose log goes to a file
// pays for writing it, and this one pays nothing for reading it.
func StartProcess(name, path string, args []string, env ...string) (_ *Process, err error) {
	cmd := exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PLUGIN_FACADE_") && !strings.HasPrefix(kv, "CONFLUENT_CLOUD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	stderr, err := os.CreateTemp("", "bench-"+name+"-stderr-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			stderr.Close()
			os.Remove(stderr.Name())
		}
	}()
	p := &Process{Name: name, cmd: cmd, lines: make(chan string, 16), stderr: stderr, done: make(chan struct{})}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody is reading: drop
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// FirstLine waits for the first line the process prints on stdout, such as
// the URL of cmd/sandbox and passproxy.
func (p *Process) FirstLine(timeout time.Duration) (string, error) {
	select {
	case l := <-p.lines:
		return strings.TrimSpace(l), nil
	case <-p.done:
		return "", fmt.Errorf("%s exited before it was ready: %v\n%s", p.Name, p.err, p.Stderr())
	case <-time.After(timeout):
		return "", fmt.Errorf("%s printed nothing within %v\n%s", p.Name, timeout, p.Stderr())
	}
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stderr is the end of what the process wrote on stderr.
func (p *Process) Stderr() string {
	fi, err := p.stderr.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(fi.Size()-stderrTail, 0)
	b := make([]byte, fi.Size()-off)
	n, _ := p.stderr.ReadAt(b, off)
	return string(b[:n])
}

// StderrBytes is how much the process has written on stderr so far.
func (p *Process) StderrBytes() int64 {
	fi, err := p.stderr.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Stop sends SIGTERM, waits up to 15 seconds for the process to exit, then
// kills it, and removes the file of its stderr. It returns the process's exit
// error, if any, with the end of its stderr.
func (p *Process) Stop() (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, p.Stderr())
		}
		p.stderr.Close()
		os.Remove(p.stderr.Name())
	}()
	if exited, err := p.Exited(); exited {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 15s of SIGTERM", p.Name)
	}
}

// Memory reads the process's resident set size and its peak (VmRSS, VmHWM)
// in bytes from /proc (Linux only).
func (p *Process) Memory() (rss, peak int64, err error) {
	return ProcMemory(p.Pid())
}

// ProcMemory reads VmRSS and VmHWM of pid from /proc/<pid>/status, in bytes.
func ProcMemory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			rss = kib << 10
		} else {
			peak = kib << 10
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return rss, peak, nil
}

// FreeAddr returns a loopback address with a port that was free a moment ago,
// for a process that must be told its address (the facade) rather than report
// it. Another process may take the port first; StartFacade then fails clearly.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitOK polls url until it answers 200, the process exits, or timeout passes.
func WaitOK(p *Process, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("%s exited before it was ready: %v\n%s", p.Name, werr, p.Stderr())
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("%s not ready at %s within %v", p.Name, url, timeout), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clockTicks is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// every Linux this runs on).
const clockTicks = 100

// ProcCPU reads the CPU time pid has used so far (user and system) from
// /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// after its closing parenthesis, where the state (field 3) starts.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks int64
	for _, v := range f[11:13] { // utime and stime, fields 14 and 15
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// SelfCPU is the CPU time (user and system) this process has used so far.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
