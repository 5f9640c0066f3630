; hold_blocks: no resale before N blocks of holding.
; params[0] = N. A transfer at height h is allowed when
; h >= acquired_height + N, with the class royalty; earlier it is denied with
; HOLDING_PERIOD. Always an entitlement.
.version 1
.equ BPS_DENOMINATOR 10000
.equ HOLDING_PERIOD 101
    CTX mode
    JUMPI entitled
    CTX acquired_height
    PARAM 0
    ADD
    CTX height
    GT
    JUMPI too_early
    CTX price
    CTX royalty_bps
    MUL
    PUSH BPS_DENOMINATOR
    DIV
    ALLOW
too_early:
    DENY HOLDING_PERIOD
entitled:
    PUSH 0
    ALLOW
