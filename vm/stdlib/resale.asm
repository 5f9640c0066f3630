; resale: free resale with royalty (the default when a key class has no program).
; Every transfer is allowed; the creator is owed price * royalty_bps / 10000,
; rounded down. Parameters: none. Always an entitlement.
.version 1
.equ BPS_DENOMINATOR 10000
    CTX price
    CTX royalty_bps
    MUL
    PUSH BPS_DENOMINATOR
    DIV
    ALLOW
