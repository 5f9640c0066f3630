; allowlist: the recipient must be in a fixed set of addresses.
; The set lives in the program's constant pool: build the program with
; vm.stdlib.program("allowlist", allowlist=[addr, ...]), which replaces
; $ALLOWLIST below with the sorted 32-byte addresses (at most 127 of them, the
; 4 KiB constant-pool cap). Other buyers: NOT_ALLOWLISTED. Allowed transfers
; pay the class royalty. Always an entitlement.
.version 1
.equ BPS_DENOMINATOR 10000
.equ NOT_ALLOWLISTED 105
.const allowed addrset $ALLOWLIST
    CTX mode
    JUMPI entitled
    CTX buyer
    INSET allowed
    NOT
    JUMPI refused
    CTX price
    CTX royalty_bps
    MUL
    PUSH BPS_DENOMINATOR
    DIV
    ALLOW
refused:
    DENY NOT_ALLOWLISTED
entitled:
    PUSH 0
    ALLOW
