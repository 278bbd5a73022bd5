;; The WebAssembly (WAGI) side of the engine conformance suite: the same
;; routes as app.js, chosen by the first letter after "PATH_INFO=/".
;;
;;   /hello   200 text/plain "hello\n"
;;   /echo    200 application/octet-stream, the request body
;;   /teapot  418 with X-Kind: teapot, "short and stout\n"
;;   /spin    loops forever
;;   /recurse recurses without bound
;;   other    404 "not found\n"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))

  ;; 0..16 iovec, 16..32 result slots, 256.. strings, 4096 env pointers,
  ;; 8192..65536 env strings, 65536..131072 I/O buffer.
  (memory (export "memory") 2)
  (data (i32.const 256) "PATH_INFO=/")                                      ;; 11
  (data (i32.const 288) "Content-Type: text/plain\n\nhello\n")              ;; 32
  (data (i32.const 336) "Content-Type: application/octet-stream\n\n")     ;; 40
  (data (i32.const 384) "Status: 418 I'm a teapot\nContent-Type: text/plain\nX-Kind: teapot\n\nshort and stout\n") ;; 82
  (data (i32.const 480) "Status: 404 Not Found\nContent-Type: text/plain\n\nnot found\n") ;; 58

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))

  (func $read (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 20)))
    (i32.load (i32.const 20)))

  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))

  ;; The byte after "PATH_INFO=/" in the environment, or 0.
  (func $route (result i32)
    (local $n i32) (local $i i32) (local $j i32)
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 4096) (i32.const 8192)))
    (local.set $n (i32.load (i32.const 20)))
    (block $none
      (loop $scan
        (br_if $none (i32.gt_u (i32.add (local.get $i) (i32.const 12)) (local.get $n)))
        (local.set $j (i32.const 0))
        (block $mismatch
          (loop $cmp
            (br_if $mismatch
              (i32.ne
                (i32.load8_u (i32.add (i32.const 8192) (i32.add (local.get $i) (local.get $j))))
                (i32.load8_u (i32.add (i32.const 256) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (if (i32.eq (local.get $j) (i32.const 11))
              (then
                (return (i32.load8_u (i32.add (i32.const 8192) (i32.add (local.get $i) (i32.const 11)))))))
            (br $cmp)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (i32.const 0))

  (func (export "_start")
    (local $route i32) (local $n i32)
    (local.set $route (call $route))
    (if (i32.eq (local.get $route) (i32.const 104)) ;; h
      (then (call $write (i32.const 288) (i32.const 32)) (return)))
    (if (i32.eq (local.get $route) (i32.const 101)) ;; e
      (then
        (call $write (i32.const 336) (i32.const 40))
        (block $eof
          (loop $copy
            (local.set $n (call $read (i32.const 65536) (i32.const 65536)))
            (br_if $eof (i32.eqz (local.get $n)))
            (call $write (i32.const 65536) (local.get $n))
            (br $copy)))
        (return)))
    (if (i32.eq (local.get $route) (i32.const 116)) ;; t
      (then (call $write (i32.const 384) (i32.const 82)) (return)))
    (if (i32.eq (local.get $route) (i32.const 115)) ;; s
      (then (loop $spin (br $spin))))
    (if (i32.eq (local.get $route) (i32.const 114)) ;; r
      (then (drop (call $recurse (i32.const 0))) (return)))
    (call $write (i32.const 480) (i32.const 58)))
)
