package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// serveSSH runs a small real SSH server on addr (x/crypto/ssh, a host key
// made at start): any public key is accepted, and an exec request gets
// "NAME CLIENT COMMAND\n" and exit status 0, where CLIENT is the address
// the connection came from, or the one a PROXY protocol header (v1 or v2)
// carried when proxy is set. A connection whose header is missing or
// malformed is closed.
func serveSSH(addr, name string, proxy bool) error {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return err
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
		ServerVersion:     "SSH-2.0-testserver",
	}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if err := sshConn(c, cfg, name, proxy); err != nil && !errors.Is(err, io.EOF) {
				log.Printf("ssh %s: %v", c.RemoteAddr(), err)
			}
		}()
	}
}

func sshConn(c net.Conn, cfg *ssh.ServerConfig, name string, proxy bool) error {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	client := c.RemoteAddr().String()
	var conn net.Conn = c
	if proxy {
		br := bufio.NewReader(c)
		src, err := readProxyHeader(br)
		if err != nil {
			return fmt.Errorf("PROXY header: %w", err)
		}
		client = src
		conn = &bufferedConn{Conn: c, r: br}
	}
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return err
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer ch.Close()
			for r := range creqs {
				if r.Type != "exec" {
					_ = r.Reply(false, nil)
					continue
				}
				var cmd struct{ Command string }
				_ = ssh.Unmarshal(r.Payload, &cmd)
				_ = r.Reply(true, nil)
				fmt.Fprintf(ch, "%s %s %s\n", name, client, cmd.Command)
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				return
			}
		}()
	}
	return nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// readProxyHeader reads a PROXY protocol header, v1 or v2, and returns the
// source address it names ("LOCAL" for a v2 LOCAL command, as health
// checks send).
func readProxyHeader(r *bufio.Reader) (string, error) {
	head, err := r.Peek(12)
	if err != nil {
		return "", err
	}
	if bytes.Equal(head, proxyV2Sig) {
		var h [16]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return "", err
		}
		n := binary.BigEndian.Uint16(h[14:16])
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		if h[12]&0x0f == 0 {
			return "LOCAL", nil
		}
		switch h[13] >> 4 {
		case 1:
			if len(body) < 12 {
				return "", errors.New("short v2 IPv4 addresses")
			}
			ip, _ := netip.AddrFromSlice(body[0:4])
			return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(body[8:10])).String(), nil
		case 2:
			if len(body) < 36 {
				return "", errors.New("short v2 IPv6 addresses")
			}
			ip, _ := netip.AddrFromSlice(body[0:16])
			return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(body[32:34])).String(), nil
		}
		return "", fmt.Errorf("v2 family %d", h[13]>>4)
	}
	line, err := r.ReadString('\n')
	if err != nil || len(line) > 107 {
		return "", fmt.Errorf("no v1 line: %q", line)
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "PROXY" {
		return "", fmt.Errorf("not a PROXY header: %q", line)
	}
	if f[1] == "UNKNOWN" || len(f) < 6 {
		return "UNKNOWN", nil
	}
	return net.JoinHostPort(f[2], f[4]), nil
}
