; max_resales: at most N resales of a token.
; params[0] = N. Allowed (with the class royalty) while times_resold < N;
; then denied with RESALE_LIMIT. Always an entitlement.
.version 1
.equ BPS_DENOMINATOR 10000
.equ RESALE_LIMIT 102
    CTX mode
    JUMPI entitled
    CTX times_resold
    PARAM 0
    GE
    JUMPI limit
    CTX price
    CTX royalty_bps
    MUL
    PUSH BPS_DENOMINATOR
    DIV
    ALLOW
limit:
    DENY RESALE_LIMIT
entitled:
    PUSH 0
    ALLOW
