# Sourced by the proxy benchmarks: the upstream both proxies stand in front of.
#
# start_upstream WORK PORT: nginx on 127.0.0.1:PORT (1 worker, keep-alive, a fixed 24-byte
# answer, no access log), its files under WORK/nginx; appends its pid to PIDS.
start_upstream() {
  local work=$1 port=$2
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "hello from the upstream\n"; }
  }
}
CONF
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  PIDS+=($!)
}

# self_signed WORK SAN: WORK/cert.pem and WORK/key.pem for CN=localhost (P-256, 2 days; not
# a CA: rustls/webpki clients trust it as itself and refuse a CA as end entity), with
# subjectAltName SAN, and WORK/combined.pem (both, for haproxy).
self_signed() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=$2" -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
  cat "$1/cert.pem" "$1/key.pem" >"$1/combined.pem"
}

# haproxy_config WORK THREADS UPSTREAM_PORT HTTPS_PORT: WORK/haproxy.cfg with THREADS threads
# and HTTPS (WORK/combined.pem, ALPN h2 and http/1.1) on 127.0.0.1:HTTPS_PORT in front of
# backend `be_http` (the upstream, connections reused); a script appends its other frontends.
haproxy_config() {
  cat >"$1/haproxy.cfg" <<CONF
global
  nbthread $2
  maxconn 4096
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
backend be_http
  mode http
  http-reuse always
  server up 127.0.0.1:$3
frontend fe_https
  mode http
  bind 127.0.0.1:$4 ssl crt $1/combined.pem alpn h2,http/1.1
  option forwardfor
  default_backend be_http
CONF
}
