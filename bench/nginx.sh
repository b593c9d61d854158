# Sourced by bench/cost.sh and bench/auto.sh: nginx with its echo module answering the seed's five
# endpoints with fixed valid answers (model_01 and model_02 truthy, so every image takes all five
# stages; model_04: two sub-images, so six requests per image), on two free 127.0.0.1 ports: U0
# with no added latency, U20 answering after 20 ms (echo_sleep). One worker, from a private
# prefix $1/nginx. nginx_start sets U0, U20 and NGINX (its pid) and stops nginx on exit.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nginx_loc() { # name answer sleep
  printf '        location = /%s {\n            echo_read_request_body;\n' "$1"
  [ "$3" = 0 ] || printf '            echo_sleep %s;\n' "$3"
  printf "            echo '%s';\n        }\n" "$2"
}

nginx_server() { # port sleep
  printf '    server {\n        listen 127.0.0.1:%s;\n' "$1"
  nginx_loc model_01 '{"result":{"label":"cat","score":1}}' "$2"
  nginx_loc model_02 '{"result":["tag_a"]}' "$2"
  nginx_loc model_03 '{"result":{"id":"0000000000000001","regions":2}}' "$2"
  nginx_loc model_04 '{"result":{"n":2,"sub-img":[{"img":"AAAAAAAAAAAAAAAAAAAAAA==","box":[0,1,2,3]},{"img":"AQEBAQEBAQEBAQEBAQEBAQ==","box":[1,2,3,4]}]}}' "$2"
  nginx_loc model_05 '{"result":{"label":"cat","bytes":16}}' "$2"
  printf '    }\n'
}

nginx_start() { # prefix
  P0=$(free_port)
  P20=$(free_port)
  while [ "$P20" = "$P0" ]; do P20=$(free_port); done
  N=$(pwd)/$1/nginx
  mkdir -p $N/logs $N/tmp
  {
    printf 'load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;\n'
    printf 'daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/logs/error.log warn;\n' $N $N
    printf 'events { worker_connections 4096; }\n'
    printf 'http {\n    access_log off;\n    default_type application/json;\n'
    printf '    client_max_body_size 16m;\n    client_body_buffer_size 256k;\n'
    printf '    keepalive_requests 10000000;\n    keepalive_timeout 300s;\n'
    for t in client_body proxy fastcgi uwsgi scgi; do printf '    %s_temp_path %s/tmp/%s;\n' $t $N $t; done
    nginx_server $P0 0
    nginx_server $P20 0.02
    printf '}\n'
  } >$N/nginx.conf
  nginx -p $N -c $N/nginx.conf -e $N/logs/error.log &
  NGINX=$!
  trap 'kill $NGINX 2>/dev/null; wait $NGINX 2>/dev/null || true' EXIT INT TERM
  for i in $(seq 50); do
    curl -s -o /dev/null -X POST -d x http://127.0.0.1:$P0/model_01 && break
    sleep 0.1
  done
  U0=http://127.0.0.1:$P0
  U20=http://127.0.0.1:$P20
}

# Installs what is missing of the given Debian packages (not by make deps).
bench_need() {
  missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "installing:$missing"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
}
