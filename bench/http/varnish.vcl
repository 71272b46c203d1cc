vcl 4.1;
# bench/http peer: Varnish (malloc storage; run.sh passes -s malloc) in front
# of the origin. No policy of our own: the builtin VCL stores what
# Cache-Control allows and passes requests with Cookie or Authorization.
# run.sh replaces @ORIGIN_PORT@.

backend origin {
    .host = "127.0.0.1";
    .port = "@ORIGIN_PORT@";
    .connect_timeout = 1s;
    .first_byte_timeout = 10s;
    .between_bytes_timeout = 5s;
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache-Status = "HIT";
    } else {
        set resp.http.X-Cache-Status = "MISS";
    }
}
