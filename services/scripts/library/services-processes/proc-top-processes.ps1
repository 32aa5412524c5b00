Get-Process |
    Sort-Object -Property {{sort_by}} -Descending |
    Select-Object -First {{top}} 'Id', 'ProcessName',
        @{ Name = 'CPUSeconds'; Expression = { [math]::Round($_.CPU, 1) } },
        @{ Name = 'MemoryMB'; Expression = { [math]::Round($_.WorkingSet64 / (1MB), 1) } },
        'StartTime' |
    Format-Table -AutoSize
