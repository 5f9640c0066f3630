; expiring: the key is an entitlement only below a height.
; params[0] = expiry height E. At heights h < E the key entitles its holder
; and may be resold with the class royalty; from E on it entitles nobody and
; transfers are denied with EXPIRED.
.version 1
.equ BPS_DENOMINATOR 10000
.equ EXPIRED 106
    CTX height
    PARAM 0
    GE
    JUMPI expired
    CTX mode
    JUMPI entitled
    CTX price
    CTX royalty_bps
    MUL
    PUSH BPS_DENOMINATOR
    DIV
    ALLOW
expired:
    DENY EXPIRED
entitled:
    PUSH 0
    ALLOW
